"""Per-principle preference snapshots: chosen / rejected follow one principle's verdicts."""

import json

import datasets
import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation.datasets import snapshots
from annotation.datasets.exports.records import JudgmentRecord
from annotation.datasets.exports.rows import principle_view
from annotation.models import DatasetSnapshot
from annotation.projects import services as project_services
from common.errors import DomainError
from tests.data_io.conftest import judge, response_ids


def test_principle_view_ranks_by_the_verdict_and_drops_what_it_does_not_decide():
    responses = {11: "a", 12: "b", 13: "c"}

    def record(i, verdicts):
        return JudgmentRecord(i, 1, f"u{i}", [[11], [12], [13]], strength=3, verdicts=verdicts)

    viewed = principle_view(
        [
            record(1, {"p": 13, "q": 11}),
            record(2, {"p": "tie"}),
            record(3, {"p": "n/a"}),
            record(4, {"q": 12}),
            record(5, {"p": 99}),  # not a response of this task
        ],
        "p",
        responses,
    )
    assert [(j.judgment_id, j.ordering, j.strength) for j in viewed] == [(1, [[13], [11, 12]], 0)]


@pytest.fixture
def voted(compare_tasks, make_user):
    """Tasks 0..5: alice and bob prefer A overall; harmless favours B on tasks 0..2 for both,
    A on tasks 3..4 for alice only (bob: tie on 3, B on 4); task 5 harmless n/a; honest always
    A; a model oracle says harmless favours B everywhere."""
    alice, bob = make_user("alice"), make_user("bob")
    oracle = project_services.get_or_create_model_annotator(name="oracle", model_ref="gpt:x@1")
    for i, task in enumerate(compare_tasks[:6]):
        a, b = response_ids(task)
        alice_says = b if i < 3 else (a if i < 5 else "not_applicable")
        bob_says = b if i < 3 else ("tie" if i == 3 else (b if i == 4 else "not_applicable"))
        judge(task, alice, [[a], [b]], verdicts={"harmless": alice_says, "honest": a})
        judge(task, bob, [[a], [b]], verdicts={"harmless": bob_says, "honest": a})
        judge(task, oracle, [[a], [b]], verdicts={"harmless": b, "honest": "not_applicable"})
    return {"alice": alice, "bob": bob, "oracle": oracle, "tasks": compare_tasks[:6]}


def rows_of(snapshot: DatasetSnapshot) -> list[dict]:
    path = snapshots.artifact_file(snapshot)
    return [json.loads(line) for line in path.read_text().splitlines()]


def chosen_is_b(task, row) -> bool:
    return row["chosen_response_id"] == response_ids(task)[1]


@pytest.mark.django_db
def test_raw_principle_snapshot_from_human_annotators(project, voted):
    snapshot = snapshots.create_snapshot(
        project=project,
        kind="preference",
        filters={"principle": "harmless", "annotator_kinds": ["human"]},
        run="inline",
    )
    assert snapshot.status == "ready" and snapshot.filters["principle"] == "harmless"
    rows = rows_of(snapshot)
    # alice: 5 decided verdicts (B on 0..2, A on 3..4); bob: 4 (B on 0..2 and 4; tie on 3)
    assert len(rows) == 9 == snapshot.row_count
    by_task = {}
    for row in rows:
        by_task.setdefault(row["task_id"], []).append(row)
    tasks = {t.pk: i for i, t in enumerate(voted["tasks"])}
    picks = {tasks[tid]: sorted(chosen_is_b(voted["tasks"][tasks[tid]], r) for r in rs)
             for tid, rs in by_task.items()}  # fmt: skip
    assert picks == {0: [True, True], 1: [True, True], 2: [True, True], 3: [False],
                     4: [False, True]}  # fmt: skip
    assert all(row["margin"] == 0.0 for row in rows)
    loaded = datasets.load_dataset(
        "json", data_files=str(snapshots.artifact_file(snapshot)), split="train"
    )
    assert loaded.num_rows == 9


@pytest.mark.django_db
def test_plurality_per_principle_and_a_model_oracle_as_the_verdict_source(project, voted):
    plurality = snapshots.create_snapshot(
        project=project,
        kind="preference",
        aggregation="majority",
        filters={"principle": "harmless", "annotator_kinds": ["human"]},
        run="inline",
    )
    rows = rows_of(plurality)
    tasks = {t.pk: t for t in voted["tasks"]}
    # tasks 0..2: both B; task 3: only alice decides (A); task 4: A against B is a tie: dropped
    assert sorted((row["task_id"], chosen_is_b(tasks[row["task_id"]], row)) for row in rows) == [
        (t.pk, i < 3) for i, t in enumerate(voted["tasks"][:4])
    ]
    oracle = snapshots.create_snapshot(
        project=project,
        kind="preference",
        filters={"principle": "harmless", "annotators": [voted["oracle"].pk]},
        run="inline",
    )
    oracle_rows = rows_of(oracle)
    assert len(oracle_rows) == 6
    assert all(chosen_is_b(tasks[row["task_id"]], row) for row in oracle_rows)
    assert oracle.filters["annotators"] == [voted["oracle"].pk]


@pytest.mark.django_db
def test_principle_filter_is_validated(project, voted):
    with pytest.raises(DomainError, match="'nope' is not a principle of"):
        snapshots.create_snapshot(project=project, kind="preference", filters={"principle": "nope"})
    with pytest.raises(DomainError, match="kind preference"):
        snapshots.create_snapshot(project=project, kind="kto", filters={"principle": "harmless"})
    with pytest.raises(DomainError, match="must be a principle key"):
        snapshots.create_snapshot(
            project=project, kind="preference", filters={"principle": ["harmless"]}
        )
    assert not DatasetSnapshot.objects.exists()


@pytest.mark.django_db
def test_every_principle_from_the_page_and_the_command(client, admin_user, project, voted):
    client.force_login(admin_user)
    form = client.get(reverse("snapshot-create", args=[project.slug])).content.decode()
    assert 'value="harmless"' in form and "each principle: one snapshot per principle" in form
    response = client.post(
        reverse("snapshot-create", args=[project.slug]),
        {"name": "by", "kind": "preference", "format": "jsonl", "aggregation": "raw",
         "principle_set": project.principle_set.label, "tie_policy": "drop",
         "style": "conversational", "prompt_style": "explicit", "expansion": "all_pairs",
         "annotator_kinds": ["human"], "principle": "*"},
    )  # fmt: skip
    assert response.status_code == 302
    built = {s.name: s for s in DatasetSnapshot.objects.all()}
    assert set(built) == {"by-harmless", "by-honest", "by-helpful"}
    assert built["by-harmless"].row_count == 9
    assert built["by-honest"].row_count == 12  # both humans say A on all six tasks
    assert built["by-helpful"].row_count == 0
    card = client.get(reverse("snapshot", args=[built["by-harmless"].pk])).content.decode()
    assert "principle=harmless" in card
    refused = client.post(
        reverse("snapshot-create", args=[project.slug]),
        {"kind": "sft", "format": "jsonl", "aggregation": "raw", "principle": "harmless",
         "principle_set": project.principle_set.label, "tie_policy": "drop",
         "style": "conversational", "prompt_style": "explicit", "expansion": "all_pairs"},
    )  # fmt: skip
    assert refused.status_code == 200
    assert "a principle&#x27;s pairs are a preference dataset" in refused.content.decode()
    call_command("create_snapshot", project=project.slug, each_principle=True, name="cli")
    assert DatasetSnapshot.objects.filter(name__startswith="cli-").count() == 3
