"""Importers: Model Spec headings, principle lists, JSONL prompts, HH-RLHF — validated, atomic."""

import gzip
import json

import pytest
from django.core.management import CommandError, call_command

from annotation.datasets.importers.hh_rlhf import import_hh_rlhf, split_transcript
from annotation.datasets.importers.prompts import import_prompts
from annotation.errors import ImportFileError
from annotation.models import Principle, Prompt, Response, Task, TaskResponse
from annotation.principles.importers import import_principles
from tests.conftest import SHARED_DATA

MODEL_SPEC = SHARED_DATA / "openai-model-spec"
HH = SHARED_DATA / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


@needs_shared
@pytest.mark.django_db
def test_model_spec_2025_12_18_yields_every_tagged_heading_with_its_tier():
    principle_set = import_principles(path=MODEL_SPEC / "model_spec_2025-12-18.md")
    tiers = dict.fromkeys(["root", "system", "developer", "user", "guideline"], 0)
    for authority in principle_set.principles.values_list("authority", flat=True):
        tiers[authority] += 1
    assert principle_set.principles.count() == 59
    assert tiers == {"root": 22, "system": 3, "developer": 1, "user": 15, "guideline": 18}
    hazards = principle_set.principles.get(key="avoid_info_hazards")
    assert hazards.title == "Don't provide information hazards"
    assert hazards.authority == "root" and hazards.kind == "rule"
    assert hazards.section == "Restricted content"
    assert "actionable steps" in hazards.text
    assert "{#" not in hazards.title


@needs_shared
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("release", "count", "top_tier"),
    [
        ("2025-02-12", 51, "platform"),
        ("2025-04-11", 51, "platform"),
        ("2025-09-12", 57, "root"),
        ("2025-10-27", 58, "root"),
        ("2025-12-18", 59, "root"),
    ],
)
def test_every_model_spec_release_imports(release, count, top_tier):
    principle_set = import_principles(path=MODEL_SPEC / f"model_spec_{release}.md")
    assert principle_set.principles.count() == count
    assert principle_set.principles.filter(authority=top_tier).count() >= 20


@needs_shared
@pytest.mark.django_db
def test_principle_list_one_per_line_keeps_line_order_and_titles():
    folder = SHARED_DATA / "alignment-discretion" / "principles"
    principle_set = import_principles(
        path=folder / "ccai_seed.txt", titles=folder / "ccai_seed_short.txt", name="ccai"
    )
    principles = list(principle_set.principles.order_by("position"))
    assert len(principles) == 21
    assert principles[0].key == "p00" and principles[0].title == "Be helpful"
    assert principles[0].text.startswith("The AI should be as helpful")
    assert [p.position for p in principles] == list(range(21))


@pytest.mark.django_db
def test_yaml_principles_and_publish_via_command(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text(
        "name: mine\nprinciples:\n"
        "  - {key: safe, title: Be safe, authority: root}\n"
        "  - {key: kind, title: Be kind, authority: guideline, declared_priority: 7}\n"
    )
    call_command("import_principles", str(path), "--publish")
    principle_set = Principle.objects.get(key="safe").principle_set
    assert principle_set.name == "mine" and principle_set.is_published
    assert Principle.objects.get(key="kind").declared_priority == 7


@pytest.mark.django_db
def test_yaml_with_bad_authority_names_the_principle_and_writes_nothing(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text("- {key: ok, title: Ok}\n- {key: bad, title: Bad, authority: emperor}\n")
    with pytest.raises(ImportFileError, match=r"bad.*emperor"):
        import_principles(path=path)
    assert not Principle.objects.exists()


def _jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.django_db
def test_jsonl_prompts_create_compare_and_rank_tasks(project, tmp_path):
    path = _jsonl(
        tmp_path / "p.jsonl",
        [
            {"messages": [{"role": "user", "content": "hi"}], "responses": ["a", "b"], "id": "x1"},
            {
                "prompt": "rank these",
                "responses": [{"text": t, "source": "model:m@1"} for t in "abcd"],
            },
        ],
    )
    assert import_prompts(project=project, path=path) == 2
    kinds = list(Task.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["compare", "rank"]
    assert Prompt.objects.get(external_id="x1").messages == [{"role": "user", "content": "hi"}]
    assert Response.objects.filter(source="model:m@1").count() == 4


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        (
            json.dumps({"messages": [{"role": "robot", "content": "x"}], "responses": ["a", "b"]}),
            "unknown role",
        ),
        (json.dumps({"prompt": "x", "responses": ["a", "b", "c"], "kind": "compare"}), "exactly 2"),
        (json.dumps({"responses": ["a", "b"]}), "needs 'messages'"),
    ],
)
def test_bad_jsonl_line_names_line_n_and_writes_nothing(project, tmp_path, bad_line, message):
    good = {"prompt": "fine", "responses": ["a", "b"]}
    path = _jsonl(tmp_path / "p.jsonl", [good, good, good, bad_line, good])
    with pytest.raises(ImportFileError, match=message) as info:
        import_prompts(project=project, path=path)
    assert info.value.line == 4
    assert str(info.value).startswith(f"{path}:4: ")
    assert not Prompt.objects.exists() and not Task.objects.exists()
    with pytest.raises(CommandError, match=":4: "):
        call_command("import_prompts", str(path), "--project", project.slug)
    assert not Prompt.objects.exists()


@pytest.mark.django_db
def test_jsonl_bytes_bom_blank_and_crlf_lines_and_a_non_utf8_line(project, tmp_path):
    good = json.dumps({"prompt": "fine", "responses": ["a", "b"]}).encode()
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\r\n\r\n" + good + b"\n  \n")
    assert import_prompts(project=project, path=path) == 2
    path.write_bytes(good + b"\n" + good.replace(b"fine", b"\xff") + b"\n")
    with pytest.raises(ImportFileError, match="not UTF-8") as info:
        import_prompts(project=project, path=path)
    assert info.value.line == 2


@pytest.mark.django_db
def test_imported_texts_and_json_round_trip_exactly(project, tmp_path):
    text = 'tab\there, "quote", back\\slash\\n, newline\nand CR\r, ünïcødé 🙂, \\N'
    metadata = {
        "big": 2**62,
        "wider than 64 bits": [2**70 + 1, -(2**64) - 3],  # orjson alone would read these as floats
        "nested": {"list": [1, 2.5, None, True]},
        "s": text,
    }
    record = {
        "messages": [{"role": "user", "content": text}],
        "responses": [{"text": text, "source": text, "generation_params": metadata}, "b"],
        "metadata": metadata,
        "id": text,
    }
    assert import_prompts(project=project, path=_jsonl(tmp_path / "p.jsonl", [record])) == 1
    prompt = Prompt.objects.get()
    assert prompt.messages == record["messages"] and prompt.metadata == metadata
    assert prompt.external_id == text
    response = Response.objects.get(text=text)  # stored in a seeded random order per task
    assert (response.text, response.source, response.generation_params) == (text, text, metadata)


def test_split_transcript_handles_multi_turn():
    assert split_transcript("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and?"},
    ]


@needs_shared
@pytest.mark.django_db
def test_hh_rlhf_import_yields_2312_compare_tasks_with_chosen_remembered(project):
    assert import_hh_rlhf(project=project, path=HH) == 2312
    assert Task.objects.filter(project=project, kind="compare").count() == 2312
    assert TaskResponse.objects.filter(source_label="chosen").count() == 2312
    assert TaskResponse.objects.filter(source_label="rejected").count() == 2312
    multi_turn = sum(len(m) > 1 for m in Prompt.objects.values_list("messages", flat=True))
    assert multi_turn > 1000
    with gzip.open(HH, "rt") as handle:
        first = json.loads(handle.readline())
    prompt = Prompt.objects.get(project=project, external_id="0")
    assert prompt.messages[0] == {
        "role": "user",
        "content": "what are some pranks with a pen i can do?",
    }
    assert prompt.messages[-1]["role"] == "user"
    chosen = TaskResponse.objects.get(task__prompt=prompt, source_label="chosen").response
    assert first["chosen"].endswith(chosen.text)
    assert Prompt.objects.filter(project=project, external_id="2311").exists()


@pytest.mark.django_db
def test_hh_rlhf_bad_line_aborts_whole_import(project, tmp_path):
    good = {
        "chosen": "\n\nHuman: q\n\nAssistant: good",
        "rejected": "\n\nHuman: q\n\nAssistant: bad",
    }
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for record in [good, good, {"chosen": "\n\nHuman: only a question"}]:
            handle.write(json.dumps(record) + "\n")
    with pytest.raises(ImportFileError) as info:
        import_hh_rlhf(project=project, path=path)
    assert info.value.line == 3
    assert not Prompt.objects.exists()
