"""The paper's principle oracle as a judge job: on a slice of HH-RLHF harmless-base test with the
paper's 21 principles, a loopback server that answers with the probabilities of the paper's
oracle file (Buyl et al. 2025) yields the same discretion report as importing that file.

Skipped only when ``../shared/data`` is absent (the product ships none of these files).
"""

import csv
import json
import time

import pytest

from annotation.datasets.importers.hh_rlhf import import_hh_rlhf
from annotation.datasets.importers.judgments import import_judgments
from annotation.models import PrincipleVerdict, TaskResponse
from annotation.principles.importers import import_principles
from annotation.projects import services as project_services
from annotation.quality import payloads
from tests.conftest import SHARED_DATA
from tests.judges.server import JudgeServer
from training.judges import runner, services, templates
from training.models import JudgeTemplate

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data absent")

AD = SHARED_DATA / "alignment-discretion"
ORACLE = AD / "principle_specific_preferences/hh_test_seed_4ob.csv"
PAIRS = 100


def _oracle_rows(tmp_path):
    """The oracle file's rows of the first PAIRS pairs, also written as a CSV to import."""
    rows = {}
    with ORACLE.open() as handle:
        for rec in csv.DictReader(handle):
            if int(rec["row_id"]) < PAIRS:
                key = (int(rec["row_id"]), int(rec["principle_id"]))
                rows[key] = tuple(float(rec[c]) for c in ("prob_A", "prob_B", "prob_NA"))
    path = tmp_path / "oracle.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["row_id", "principle_id", "prob_A", "prob_B", "prob_NA"])
        out.writerows([*key, *probs] for key, probs in rows.items())
    return rows, path


def _answers(project, rows) -> dict[str, dict[str, float]]:
    """What the server answers to each question: the file's probabilities with A = chosen, the
    same with A and B swapped when the rejected response is shown first."""
    template = templates.ensure_defaults()[templates.PRINCIPLE_DEFAULT]
    texts: dict[int, dict[str, str]] = {}
    prompts = {}
    for row_id, label, text, messages in TaskResponse.objects.filter(
        task__project=project
    ).values_list(
        "task__prompt__external_id", "source_label", "response__text", "task__prompt__messages"
    ):
        texts.setdefault(int(row_id), {})[label] = text
        prompts[int(row_id)] = templates.prompt_text(messages)
    principles = dict(project.principle_set.principles.values_list("position", "text"))
    answers = {}
    for (row_id, position), (a, b, na) in rows.items():
        chosen, rejected = texts[row_id]["chosen"], texts[row_id]["rejected"]
        for first, second, probs in (
            (chosen, rejected, (a, b, na)),
            (rejected, chosen, (b, a, na)),
        ):
            messages = templates.render(
                template,
                prompt=prompts[row_id],
                response_a=first,
                response_b=second,
                principle=principles[position],
            )
            answer = dict(zip(("A", "B", "NA"), probs, strict=True))
            assert answers.setdefault(messages[-1]["content"], answer) == answer
    return answers


def test_oracle_job_reproduces_the_imported_oracle_file(db, tmp_path):
    principle_set = import_principles(
        path=AD / "principles/ccai_seed.txt",
        titles=AD / "principles/ccai_seed_short.txt",
        name="ccai-seed",
        publish=True,
    )
    project = project_services.create_project(
        name="HH slice", slug="hh-judge", principle_set=principle_set, task_kinds=["compare"]
    )
    hh = SHARED_DATA / "hh-rlhf/harmless-base/test.jsonl.gz"
    assert import_hh_rlhf(project=project, path=hh, limit=PAIRS) == PAIRS
    rows, path = _oracle_rows(tmp_path)
    assert len(rows) == PAIRS * 21
    import_judgments(project=project, path=path, fmt="principle-oracle", annotator="oracle_file")
    for name, fname in (("rm_llama3_8b", "Llama3-8B_reward_model_trained_in-hh-harmlesness"
                         "_evaluated_in-hh-harmlesness_partition-test.csv"),):  # fmt: skip
        import_judgments(
            project=project,
            path=AD / "reward_model_preferences" / fname,
            fmt="reward-model",
            annotator=name,
            ignore_unknown_rows=True,
        )
    answers = _answers(project, rows)

    started = time.perf_counter()
    with JudgeServer(score=lambda messages: answers[messages[-1]["content"]]) as server:
        job = services.launch_job(
            project=project,
            backend="http",
            config={"base_url": server.base_url, "model": "judge-model", "concurrency": 16},
            annotator="oracle_job",
            enqueue=False,
        )
        runner.execute(job.pk)
    print(f"judge job: {time.perf_counter() - started:.1f} s for {len(server.asked)} requests")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.template.kind == JudgeTemplate.Kind.PRINCIPLE
    assert len(server.asked) == PAIRS * 21 * 2 == job.requests
    assert PrincipleVerdict.objects.filter(judgment__annotator__username="oracle_job").count() == (
        PAIRS * 21
    )

    def report(reference):
        """The report without the two oracles (each report leaves out its own reference)."""
        payload = payloads.discretion_payload(project, reference=reference)
        body = json.loads(json.dumps(payloads.report_json(payload)))
        for name in ("oracle_file", "oracle_job"):
            body["annotators"].pop(name, None)
            body["supremacy"].pop(name, None)
            for entry in body["annotators"].values():
                entry["dd"].pop(name, None)
        return body

    imported, judged = report("oracle_file"), report("oracle_job")
    assert imported["pairs"] == PAIRS
    assert sum(imported["categories"].values()) == PAIRS
    assert imported["categories"]["conflict"] > 0 and imported["categories"]["consensus"] > 0
    assert imported["annotators"]["rm_llama3_8b"]["da_n"] > 0
    assert imported["supremacy"]["human"]
    assert judged["categories"] == imported["categories"]
    for name in ("human", "rm_llama3_8b"):
        for key in ("da", "da_n", "priority", "weights"):
            assert judged["annotators"][name][key] == imported["annotators"][name][key], name
        assert judged["supremacy"][name] == imported["supremacy"][name]
    assert judged == imported
