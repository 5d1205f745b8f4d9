"""Importers for every format: correct tasks + judgments, ties and both-bad kept, and a malformed
file rejected whole with ``path:line`` and zero rows written."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.datasets.importers.preferences import import_preferences
from annotation.datasets.importers.prompts import import_prompts
from annotation.errors import ImportFileError
from annotation.models import AnnotatorProfile, Judgment, Prompt, Response, Task, TaskResponse
from tests.data_io.conftest import (
    arena_battle,
    choices,
    label_studio_task,
    pairwise,
    ranker,
    ranker_task,
    write_jsonl,
)

GOOD = {"prompt": "fine", "responses": ["a", "b"]}


def nothing_written():
    return not (Prompt.objects.exists() or Task.objects.exists() or Judgment.objects.exists())


# ---------------------------------------------------------------- prompts: JSON / CSV / Parquet


@pytest.mark.django_db
def test_json_array_prompts(project, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            [
                {
                    "messages": [{"role": "user", "content": "hi"}],
                    "responses": ["a", "b"],
                    "id": "x",
                },
                {"prompt": "rank", "responses": ["1", "2", "3"]},
            ],
            indent=2,
        )
    )
    assert import_prompts(project=project, path=path) == 2
    assert list(Task.objects.values_list("kind", flat=True)) == ["compare", "rank"]
    assert Prompt.objects.get(external_id="x").messages == [{"role": "user", "content": "hi"}]


@pytest.mark.django_db
def test_csv_prompts_with_numbered_and_json_columns(project, tmp_path):
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt", "response_a", "response_b", "source_a", "metadata"])
        writer.writerow(["r1", "Say hi", "Hello,\nworld", "Hi", "model:m@1", '{"topic": "x"}'])
        writer.writerow(["r2", "Say bye", "Bye", "Ciao", "", ""])
    assert import_prompts(project=project, path=path) == 2
    prompt = Prompt.objects.get(external_id="r1")
    assert prompt.metadata == {"topic": "x"}
    texts = set(Response.objects.filter(prompt=prompt).values_list("text", "source"))
    assert texts == {("Hello,\nworld", "model:m@1"), ("Hi", "")}


@pytest.mark.django_db
def test_parquet_prompts(project, tmp_path):
    path = tmp_path / "p.parquet"
    table = pa.Table.from_pylist(
        [
            {"id": "a", "prompt": "one", "responses": ["x", "y"]},
            {"id": "b", "prompt": "two", "responses": ["x", "y"]},
        ]
    )
    pq.write_table(table, path)
    assert import_prompts(project=project, path=path) == 2
    assert Task.objects.filter(kind="compare").count() == 2


@pytest.mark.django_db
def test_repeated_or_existing_ids_are_refused_with_their_line(project, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{**GOOD, "id": "1"}, {**GOOD, "id": "1"}])
    with pytest.raises(ImportFileError, match="repeats line 1") as info:
        import_prompts(project=project, path=path)
    assert info.value.line == 2 and nothing_written()
    import_prompts(project=project, path=write_jsonl(tmp_path / "a.jsonl", [{**GOOD, "id": "1"}]))
    with pytest.raises(ImportFileError, match="already in project") as info:
        import_prompts(
            project=project,
            path=write_jsonl(tmp_path / "b.jsonl", [{**GOOD, "id": "2"}, {**GOOD, "id": "1"}]),
        )
    assert info.value.line == 2 and Prompt.objects.count() == 1


def _malformed_prompt_files(tmp_path):
    """(path, expected line, message) for one broken record in each container format."""
    json_path = tmp_path / "bad.json"
    json_path.write_text(
        '[\n  {"prompt": "ok", "responses": ["a", "b"]},\n'
        '  {"prompt": "ok", "responses": ["a", "b"]},\n'
        '  {"prompt": "bad", "responses": ["a", "b", "c"], "kind": "compare"}\n]\n'
    )
    json_syntax = tmp_path / "syntax.json"
    json_syntax.write_text('[\n {"prompt": "ok", "responses": ["a", "b"]},\n {"prompt": oops}\n]')
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(
        'prompt,response_a,response_b\nok,a,b\n"multi\nline",a,b\nbroken,a\n', encoding="utf-8"
    )
    parquet_path = tmp_path / "bad.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {"prompt": "ok", "responses": ["a", "b"], "kind": ""},
                {"prompt": "ok", "responses": ["a", "b"], "kind": ""},
                {"prompt": "ok", "responses": ["a", "b"], "kind": "wrong"},
            ]
        ),
        parquet_path,
    )
    jsonl_path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD, GOOD, "{nope", GOOD])
    utf8_path = tmp_path / "bad-utf8.json"
    utf8_path.write_bytes(b'[\n{"prompt": "ok", "responses": ["a", "b"]},\n{"prompt": "\xff"}]')
    return [
        (json_path, 4, "exactly 2"),
        (json_syntax, 3, "invalid JSON"),
        (csv_path, 5, "2 cells for 3 columns"),
        (parquet_path, 3, "unknown task kind"),
        (jsonl_path, 4, "invalid JSON"),
        (utf8_path, 3, "not UTF-8"),
    ]


@pytest.mark.django_db
def test_every_prompt_format_rejects_a_malformed_file_whole_naming_the_line(project, tmp_path):
    for path, line, message in _malformed_prompt_files(tmp_path):
        with pytest.raises(ImportFileError, match=message) as info:
            import_prompts(project=project, path=path)
        assert info.value.line == line, (path.name, str(info.value))
        assert str(info.value).startswith(f"{path}:{line}: ")
        assert nothing_written()
    with pytest.raises(CommandError, match=r"bad\.csv:5: "):
        call_command("import_prompts", str(tmp_path / "bad.csv"), "--project", project.slug)
    assert nothing_written()


# ---------------------------------------------------------------- preferences


@pytest.mark.django_db
def test_trl_text_conversational_explicit_and_implicit(project, tmp_path):
    msgs = [{"role": "user", "content": "Capital of France?"}]
    records = [
        {"prompt": "What is 2+2?", "chosen": " 4", "rejected": " 5"},
        {
            "prompt": msgs,
            "chosen": [{"role": "assistant", "content": "Paris"}],
            "rejected": [{"role": "assistant", "content": "Lyon"}],
        },
        {
            "chosen": [*msgs, {"role": "assistant", "content": "Paris"}],
            "rejected": [*msgs, {"role": "assistant", "content": "Nice"}],
        },
        {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello",
            "rejected": "\n\nHuman: hi\n\nAssistant: go",
        },
        {"chosen": "The sky is blue", "rejected": "The sky is green"},
    ]
    path = write_jsonl(tmp_path / "trl.jsonl", records)
    result = import_preferences(project=project, path=path, fmt="trl", annotator="ultrafb")
    assert (result.tasks, result.judgments) == (5, 5)
    prompts = [t.prompt.messages for t in Task.objects.order_by("id")]
    assert prompts[0] == [{"role": "user", "content": "What is 2+2?"}]
    assert prompts[1] == prompts[2] == msgs
    assert prompts[3] == [{"role": "user", "content": "hi"}]
    assert prompts[4] == [{"role": "user", "content": "The sky is"}]
    for task in Task.objects.all():
        judgment = task.judgments.get()
        chosen = TaskResponse.objects.get(task=task, source_label="chosen").response_id
        rejected = TaskResponse.objects.get(task=task, source_label="rejected").response_id
        assert judgment.ordering == [[chosen], [rejected]]
        assert judgment.origin == "import:trl" and task.submitted_count == 1
    assert Response.objects.get(pk=Task.objects.last().judgments.get().ordering[0][0]).text == (
        "blue"
    )
    annotator = Judgment.objects.first().annotator
    assert annotator.username == "ultrafb" and annotator.profile.kind == "human"


@pytest.mark.django_db
def test_arena_keeps_ties_and_both_bad_and_model_sources(project, tmp_path):
    winners = ["model_a", "model_b", "tie", "tie (bothbad)"]
    path = write_jsonl(
        tmp_path / "arena.jsonl", [arena_battle(i, w) for i, w in enumerate(winners)]
    )
    result = import_preferences(
        project=project, path=path, fmt="arena", annotator="arena-crowd", annotator_kind="human"
    )
    assert (result.tasks, result.judgments) == (4, 4)
    rows = []
    for task in Task.objects.order_by("id"):
        assert task.task_responses.count() == 2
        judgment = task.judgments.get()
        rows.append((judgment.ordering, judgment.both_bad))
        assert task.prompt.metadata["judge"].startswith("arena_user_")
    # responses are stored in a seeded random order per task: name them by text
    texts = dict(Response.objects.values_list("id", "text"))
    named = [[[texts[rid] for rid in bucket] for bucket in ordering] for ordering, _ in rows]
    assert named[0] == [["A says 0"], ["B says 0"]] and rows[0][1] is False
    assert named[1] == [["B says 1"], ["A says 1"]] and rows[1][1] is False
    assert len(rows[2][0]) == 1 and len(rows[2][0][0]) == 2 and rows[2][1] is False
    assert len(rows[3][0]) == 1 and len(rows[3][0][0]) == 2 and rows[3][1] is True
    assert set(Response.objects.values_list("source", flat=True)) == {
        "model:alpha-7b",
        "model:beta-13b",
    }


@pytest.mark.django_db
def test_label_studio_pairwise_export_keeps_ties_and_both_bad(project, tmp_path):
    tasks = [
        label_studio_task(0, [pairwise("left")]),
        label_studio_task(1, [pairwise("right"), choices("Both bad")]),
        label_studio_task(2, [choices("Tie")]),
        label_studio_task(3, [choices("Both bad")], completed_by={"id": 7, "email": "x@y"}),
        label_studio_task(4, [pairwise("left")], cancelled=True),
        label_studio_task(
            5,
            [
                {
                    "type": "textarea",
                    "from_name": "why",
                    "to_name": "prompt",
                    "value": {"text": ["clearer"]},
                },
                choices("B"),
            ],
        ),
    ]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks, indent=1))
    result = import_preferences(project=project, path=path, fmt="label-studio", annotator="ls")
    assert (result.tasks, result.judgments) == (6, 5)
    assert result.annotators == ["ls:1", "ls:7"]
    got = []
    for task in Task.objects.order_by("id"):
        by_text = {r.text.split()[0]: r.pk for r in task.responses.all()}  # stored shuffled
        left, right = by_text["left"], by_text["right"]
        judgment = task.judgments.first()
        if judgment is None:
            got.append(None)
            continue
        shape = {
            str([[left], [right]]): "left",
            str([[right], [left]]): "right",
            str([[left, right]]): "tie",
        }[str(judgment.ordering)]
        got.append((shape, judgment.both_bad, judgment.rationale))
    assert got == [
        ("left", False, ""),
        ("right", True, ""),
        ("tie", False, ""),
        ("tie", True, ""),
        None,
        ("right", False, "clearer"),
    ]
    assert Task.objects.filter(submitted_count=0).count() == 1


@pytest.mark.django_db
def test_label_studio_ranker_export_becomes_rank_and_compare_tasks(project, tmp_path):
    tasks = [
        ranker_task(
            0,
            ["llm_1", "llm_2", "llm_3"],
            [
                [ranker({"rank": ["llm_2", "llm_3", "llm_1"]})],
                [ranker(["llm_1", "llm_2", "llm_3"])],
            ],
        ),
        ranker_task(1, ["x", "y"], [[ranker({"rank": ["y", "x"]}), choices("Both bad")]]),
        ranker_task(2, ["p", "q", "r"], [[choices("Tie")]]),
    ]
    path = tmp_path / "ranker.json"
    path.write_text(json.dumps(tasks, indent=1))
    result = import_preferences(project=project, path=path, fmt="label-studio", annotator="ls")
    assert (result.tasks, result.judgments) == (3, 4)
    first, second, third = Task.objects.order_by("id")
    assert [first.kind, second.kind, third.kind] == ["rank", "compare", "rank"]
    ids = {
        tr.response.source.rsplit(":", 1)[1]: tr.response_id
        for tr in TaskResponse.objects.select_related("response")
    }
    orderings = [
        (j.annotator.username, j.ordering, j.both_bad)
        for j in Judgment.objects.order_by("task_id", "annotator__username")
    ]
    assert orderings == [
        ("ls:1", [[ids["llm_2"]], [ids["llm_3"]], [ids["llm_1"]]], False),
        ("ls:2", [[ids["llm_1"]], [ids["llm_2"]], [ids["llm_3"]]], False),
        ("ls:1", [[ids["y"]], [ids["x"]]], True),
        ("ls:1", [[ids["p"], ids["q"], ids["r"]]], False),  # the tie is kept
    ]
    assert Response.objects.get(pk=ids["llm_3"]).text == "llm_3 answers 0"


@pytest.mark.parametrize(
    "result, message",
    [
        ([ranker({"best": ["a"], "worst": ["b", "c"]})], r"ranker buckets \(best, worst\)"),
        ([ranker({"rank": ["a", "b"]})], "must name each item once"),
        ([ranker({"rank": ["a", "b", "b"]})], "must name each item once"),
        ([pairwise("left")], "exactly two responses"),
        ([ranker(["a", "b", "c"]), choices("Tie")], "more than one of"),
    ],
)
@pytest.mark.django_db
def test_label_studio_rankings_that_cannot_map_are_rejected_naming_the_line(
    project, tmp_path, result, message
):
    good = ranker_task(0, ["a", "b", "c"], [[ranker({"rank": ["c", "b", "a"]})]])
    bad = ranker_task(1, ["a", "b", "c"], [result])
    path = tmp_path / "ranker-bad.json"
    path.write_text(json.dumps([good, bad], indent=2))
    line = [i for i, text in enumerate(path.read_text().splitlines(), 1) if text == "  {"][1]
    with pytest.raises(ImportFileError, match=message) as info:
        import_preferences(project=project, path=path, fmt="label-studio", annotator="ls")
    assert str(info.value).startswith(f"{path}:{line}: annotation 1: ")
    assert nothing_written()


@pytest.mark.django_db
def test_label_studio_ranker_on_a_pairwise_task_is_rejected(project, tmp_path):
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([label_studio_task(0, [ranker({"rank": ["a", "b"]})])]))
    with pytest.raises(ImportFileError, match=r"needs the responses as 'data\.items'"):
        import_preferences(project=project, path=path, fmt="label-studio", annotator="ls")


@pytest.mark.django_db
def test_hh_rlhf_as_judgments_by_a_model_annotator(project, tmp_path):
    good = {
        "chosen": "\n\nHuman: q\n\nAssistant: good",
        "rejected": "\n\nHuman: q\n\nAssistant: bad",
    }
    path = write_jsonl(tmp_path / "hh.jsonl", [good, good])
    result = import_preferences(
        project=project,
        path=path,
        fmt="hh-rlhf",
        annotator="hh-labelers",
        annotator_kind="model",
        model_ref="external:anthropic-hh",
    )
    assert (result.tasks, result.judgments) == (2, 2)
    profile = AnnotatorProfile.objects.get(user__username="hh-labelers")
    assert profile.kind == "model" and profile.model_ref == "external:anthropic-hh"


def _malformed_preference_files(tmp_path):
    msgs = [{"role": "user", "content": "q"}]
    good_trl = {"prompt": "q", "chosen": "a", "rejected": "b"}
    ls_good = label_studio_task(0, [pairwise("left")])
    ls_bad = label_studio_task(1, [pairwise("middle")])
    ls_path = tmp_path / "ls-bad.json"
    ls_path.write_text(json.dumps([ls_good, ls_good | {"id": 9}, ls_bad], indent=2))
    ls_line = ls_path.read_text().splitlines().index("  {", 2) + 1
    ls_line = [i for i, text in enumerate(ls_path.read_text().splitlines(), 1) if text == "  {"][2]
    trl_csv = tmp_path / "trl-bad.csv"
    trl_csv.write_text("prompt,chosen,rejected\nq,a,b\nq,,b\n")
    trl_parquet = tmp_path / "trl-bad.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [good_trl, good_trl, {"prompt": "q", "chosen": "a", "rejected": None}]
        ),
        trl_parquet,
    )
    return [
        (
            "trl",
            write_jsonl(
                tmp_path / "trl.jsonl",
                [
                    good_trl,
                    {
                        "prompt": msgs,
                        "chosen": [{"role": "assistant", "content": "a"}],
                        "rejected": "b",
                    },
                ],
            ),
            2,
            "both be text or messages",
        ),
        ("trl", trl_csv, 3, "'chosen' must be a non-empty"),
        ("trl", trl_parquet, 3, "needs 'chosen' and 'rejected'"),
        (
            "hh-rlhf",
            write_jsonl(
                tmp_path / "hh.jsonl",
                [
                    {
                        "chosen": "\n\nHuman: q\n\nAssistant: a",
                        "rejected": "\n\nHuman: q\n\nAssistant: b",
                    },
                    {"chosen": "no turns", "rejected": "\n\nHuman: q\n\nAssistant: b"},
                ],
            ),
            2,
            "chosen",
        ),
        (
            "arena",
            write_jsonl(
                tmp_path / "arena.jsonl",
                [
                    arena_battle(0, "model_a"),
                    arena_battle(1, "model_a"),
                    arena_battle(2, "model_c"),
                ],
            ),
            3,
            "'winner' must be one of",
        ),
        ("label-studio", ls_path, ls_line, "left or right"),
    ]


@pytest.mark.django_db
def test_every_preference_format_rejects_a_malformed_file_whole_naming_the_line(project, tmp_path):
    for fmt, path, line, message in _malformed_preference_files(tmp_path):
        with pytest.raises(ImportFileError, match=message) as info:
            import_preferences(project=project, path=path, fmt=fmt, annotator="ext")
        assert info.value.line == line, (fmt, str(info.value))
        assert str(info.value).startswith(f"{path}:{line}: ")
        assert nothing_written()
    with pytest.raises(CommandError, match=r"arena\.jsonl:3: "):
        call_command(
            "import_preferences",
            str(tmp_path / "arena.jsonl"),
            "--project",
            project.slug,
            "--format",
            "arena",
            "--annotator",
            "ext",
        )
    assert nothing_written()


@pytest.mark.django_db
def test_import_preferences_command(project, tmp_path, capsys):
    path = write_jsonl(tmp_path / "arena.jsonl", [arena_battle(i, "tie") for i in range(3)])
    call_command(
        "import_preferences",
        str(path),
        "--project",
        project.slug,
        "--format",
        "arena",
        "--annotator",
        "gpt-judge",
        "--annotator-kind",
        "model",
    )
    assert "imported 3 tasks and 3 judgments by gpt-judge" in capsys.readouterr().out
    assert AnnotatorProfile.objects.get(user__username="gpt-judge").kind == "model"
