"""Dataset snapshots: filters, frozen horizon, hashes, pseudonyms, formats, Celery entry point."""

import hashlib
import json

import datasets
import pytest

from annotation.datasets import decoding, shards, snapshots
from annotation.datasets import filters as dataset_filters
from annotation.datasets import loaders as dataset_loaders
from annotation.datasets import pg as dataset_pg
from annotation.models import DatasetSnapshot, Demonstration, Judgment, Task
from annotation.projects import services as project_services
from annotation.tasks import build_snapshot as build_snapshot_task
from annotation.workspace import judging
from common.errors import DomainError
from tests.data_io.conftest import judge, response_ids


@pytest.fixture
def judged(compare_tasks, make_user):
    """Ten compare tasks: a human prefers A everywhere (task 0 both-bad, task 1 a tie, task 2
    arbitrary: every principle favours B); a model judge prefers B on tasks 0..4."""
    human = make_user("alice")
    model = project_services.get_or_create_model_annotator(name="rm-judge", model_ref="model:rm@1")
    for i, task in enumerate(compare_tasks):
        a, b = response_ids(task)
        ordering = [[a, b]] if i == 1 else [[a], [b]]
        verdicts = {"harmless": b, "honest": b} if i == 2 else {"harmless": a, "honest": "tie"}
        judge(
            task,
            human,
            ordering,
            strength=0 if i == 1 else 2,
            both_bad=i == 0,
            verdicts=verdicts,
            decisive=[] if i == 2 else ["harmless"],
        )
        if i < 5:
            judge(task, model, [[b], [a]], strength=1)
    return human, model


def read_jsonl(snapshot):
    return [json.loads(line) for line in snapshots.artifact_file(snapshot).read_text().splitlines()]


@pytest.mark.django_db
def test_preference_snapshot_is_hashed_pseudonymous_and_counted(project, judged, settings):
    snapshot = snapshots.create_snapshot(project=project, kind="preference", name="all")
    assert snapshot.status == "ready", snapshot.error
    path = snapshots.artifact_file(snapshot)
    assert path.parent == settings.ARTIFACT_ROOT / "snapshots"
    assert snapshot.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert snapshot.size_bytes == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    rows = read_jsonl(snapshot)
    assert len(rows) == snapshot.row_count == 9 + 5  # the human's tie is dropped
    counts = snapshot.per_annotator_counts
    assert sorted(counts.values()) == [5, 9] and not {"alice", "rm-judge"} & set(counts)
    text = path.read_text()
    assert "alice" not in text and "rm-judge" not in text
    assert snapshot.discretion_summary["arbitrary_discretion"] == 1
    assert snapshot.discretion_summary["both_bad"] == 1
    assert snapshot.filters["principle_set"] == "test-principles@1"
    assert snapshot.filters["max_judgment_id"] >= max(r["judgment_ids"][0] for r in rows)
    first = rows[0]
    assert first["prompt"] == [{"role": "user", "content": "Question 0?"}]
    assert first["spec_version"] == "test-principles@1" and first["margin"] == pytest.approx(2 / 3)
    assert {"key": "harmless", "favours": "chosen", "decisive": True} in first["principles"]


@pytest.mark.django_db
def test_filters_select_annotators_and_drop_flagged_rows(project, judged):
    human, model = judged

    def rows(**filters):
        snap = snapshots.create_snapshot(project=project, kind="preference", filters=filters)
        assert snap.status == "ready", snap.error
        return read_jsonl(snap)

    assert len(rows(annotator_kinds=["model"])) == 5
    assert len(rows(annotators=[human.pk])) == 9
    assert len(rows(annotators=[human.pk], exclude_both_bad=True)) == 8
    assert len(rows(annotators=[human.pk], exclude_discretion=True)) == 8
    assert len(rows(annotators=[human.pk], tie_policy="both_orders")) == 11
    agreed = rows(min_agreement=0.75)  # tasks 0..4 split 1:1 between human and model
    assert [r["task_id"] for r in agreed] == [t.pk for t in Task.objects.order_by("id")[5:]]
    Task.objects.filter(pk=agreed[0]["task_id"]).update(is_gold=True)
    assert len(rows(min_agreement=0.75, exclude_gold=True)) == 4
    assert rows(date_from="2999-01-01") == []
    majority = rows(annotators=[human.pk, model.pk], min_agreement=0.0)
    assert len(majority) == 14
    with pytest.raises(DomainError, match="unknown filters"):
        snapshots.create_snapshot(project=project, kind="preference", filters={"colour": "red"})
    with pytest.raises(DomainError, match="expansion"):
        snapshots.create_snapshot(
            project=project, kind="preference", filters={"expansion": "zigzag"}
        )


@pytest.mark.django_db
def test_flagged_judgments_are_left_out_on_request(project, judged, make_user):
    human, model = judged
    manager = make_user("manager-1", role="manager")
    doubtful = Judgment.objects.filter(annotator=model).order_by("id").first()

    def judgment_ids(**filters):
        snap = snapshots.create_snapshot(project=project, kind="preference", filters=filters)
        assert snap.status == "ready", snap.error
        return {i for row in read_jsonl(snap) for i in row["judgment_ids"]}

    with pytest.raises(DomainError, match="managers and admins"):
        judging.flag_judgment(judgment=doubtful, by=human, reason="mine is better")
    with pytest.raises(DomainError, match="reason"):
        judging.flag_judgment(judgment=doubtful, by=manager, reason="  ")
    everything = judgment_ids()
    judging.flag_judgment(judgment=doubtful, by=manager, reason="judge saw the wrong pair")
    doubtful.refresh_from_db()
    assert doubtful.flagged and doubtful.flagged_by == manager and doubtful.flagged_at
    assert judgment_ids() == everything  # flagging alone changes no export
    kept = judgment_ids(exclude_flagged=True)
    assert kept == everything - {doubtful.pk} and len(kept) == 13
    snap = snapshots.create_snapshot(
        project=project, kind="raw", filters={"exclude_flagged": True}, fmt="parquet"
    )
    assert snap.filters["exclude_flagged"] is True
    assert (
        doubtful.pk
        not in datasets.load_dataset(
            "parquet", data_files=str(snapshots.artifact_file(snap)), split="train"
        )["judgment_id"]
    )
    judging.flag_judgment(judgment=doubtful, by=manager, flagged=False)
    doubtful.refresh_from_db()
    assert not doubtful.flagged and doubtful.flag_reason == "" and doubtful.flagged_by is None
    assert judgment_ids(exclude_flagged=True) == everything


@pytest.mark.django_db
def test_majority_snapshot_and_frozen_horizon(project, judged, make_user, compare_tasks):
    snapshot = snapshots.create_snapshot(
        project=project, kind="preference", aggregation="majority", run="async"
    )
    assert snapshot.status == "building"
    late = make_user("late")
    a, b = response_ids(compare_tasks[9])
    judge(compare_tasks[9], late, [[b], [a]])  # after the snapshot was requested
    built = build_snapshot_task.apply(args=(snapshot.pk,)).get()
    snapshot.refresh_from_db()
    assert built["status"] == "ready" == snapshot.status
    rows = read_jsonl(snapshot)
    # tasks 0, 2..4 are 1:1 splits (no majority); on task 1 the human's tie leaves the model's
    # strict vote the majority; tasks 5..9 were judged by the human only (late one ignored)
    assert [r["task_id"] for r in rows] == [t.pk for t in [compare_tasks[1], *compare_tasks[5:]]]
    assert rows[0]["agreement"] == 0.5 and len(rows[0]["judgment_ids"]) == 2
    assert rows[0]["chosen_response_id"] == response_ids(compare_tasks[1])[1]
    assert all(len(r["judgment_ids"]) == 1 and r["aggregation"] == "majority" for r in rows[1:])


@pytest.mark.django_db
def test_parquet_kto_ranking_and_raw_snapshots_load_with_datasets(project, judged):
    for kind, expected in (("kto", 9 * 2 + 5 * 2), ("ranking", 15), ("raw", 15)):
        snapshot = snapshots.create_snapshot(project=project, kind=kind, fmt="parquet")
        assert snapshot.status == "ready", snapshot.error
        loaded = datasets.load_dataset(
            "parquet", data_files=str(snapshots.artifact_file(snapshot)), split="train"
        )
        assert loaded.num_rows == snapshot.row_count == expected, kind
        jsonl = snapshots.create_snapshot(project=project, kind=kind)
        assert (
            datasets.load_dataset(
                "json", data_files=str(snapshots.artifact_file(jsonl)), split="train"
            ).num_rows
            == expected
        )


@pytest.mark.django_db
def test_sft_snapshot_from_demonstrations(project, compare_tasks, make_user, principle_set):
    writer = make_user("writer")
    task = compare_tasks[0]
    demo = Demonstration.objects.create(
        prompt=task.prompt, task=task, annotator=writer, text="The ideal answer."
    )
    demo.cited_principles.set(principle_set.principles.filter(key__in=["honest", "helpful"]))
    snapshot = snapshots.create_snapshot(project=project, kind="sft", fmt="parquet")
    assert snapshot.status == "ready" and snapshot.row_count == 1
    loaded = datasets.load_dataset(
        "parquet", data_files=str(snapshots.artifact_file(snapshot)), split="train"
    )
    assert loaded[0]["messages"] == [
        {"role": "user", "content": "Question 0?"},
        {"role": "assistant", "content": "The ideal answer."},
    ]
    assert loaded[0]["cited_principles"] == ["helpful", "honest"]


@pytest.mark.django_db
def test_streamed_export_matches_snapshot_rows(project, judged):
    streamed = b"".join(snapshots.export_stream(project=project, kind="preference"))
    snapshot = snapshots.create_snapshot(project=project, kind="preference")
    assert streamed == snapshots.artifact_file(snapshot).read_bytes()


@pytest.mark.django_db
def test_a_failing_build_is_recorded_not_raised(project, judged, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(snapshots, "open_writer", boom)
    snapshot = snapshots.create_snapshot(project=project, kind="preference")
    assert snapshot.status == DatasetSnapshot.Status.FAILED and "disk full" in snapshot.error


@pytest.mark.django_db
def test_create_snapshot_command(project, judged, capsys):
    from django.core.management import call_command

    call_command("create_snapshot", "--project", project.slug, "--format", "parquet",
                 "--filters", '{"annotator_kinds": ["model"]}')  # fmt: skip
    out = capsys.readouterr().out
    snapshot = DatasetSnapshot.objects.get()
    assert f"snapshot {snapshot.pk}: 5 rows, sha256 {snapshot.sha256}" in out


@pytest.mark.django_db(transaction=True)
def test_parallel_shards_write_what_one_process_writes(project, judged, settings, monkeypatch):
    """PostgreSQL: a large export is split into worker processes; the JSONL is byte-identical
    and the Parquet holds the same rows and counts as a one-process build."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("shard workers run on PostgreSQL only")
    started = []
    start = shards.Shard.start
    monkeypatch.setattr(shards.Shard, "start", lambda *a: started.append(a[-1]) or start(*a))
    built = {}
    for workers in (1, 3):
        settings.SNAPSHOT_WORKERS = workers
        settings.SNAPSHOT_PARALLEL_MIN_JUDGMENTS = 1
        for fmt in ("jsonl", "parquet"):
            snapshot = snapshots.create_snapshot(
                project=project, kind="preference", fmt=fmt, run="inline"
            )
            assert snapshot.status == "ready", snapshot.error
            built[workers, fmt] = snapshot
    assert len(started) == 4  # two worker shards for each format when three workers share
    assert built[1, "jsonl"].sha256 == built[3, "jsonl"].sha256
    for fmt in ("jsonl", "parquet"):
        one, three = built[1, fmt], built[3, fmt]
        assert one.row_count == three.row_count == 14
        assert one.per_annotator_counts == three.per_annotator_counts
        assert one.discretion_summary == three.discretion_summary
    tables = [
        datasets.load_dataset(
            "parquet", data_files=str(snapshots.artifact_file(built[n, "parquet"])), split="train"
        ).to_list()
        for n in (1, 3)
    ]
    assert tables[0] == tables[1]
    leftovers = [p.name for p in snapshots.artifact_file(built[1, "jsonl"]).parent.iterdir()]
    assert not [name for name in leftovers if name.startswith(".")]


@pytest.mark.django_db
def test_loaders_read_verdicts_and_decisive_principles_in_principle_order(
    project, compare_tasks, make_user
):
    """Both loaders (PostgreSQL's aggregates principle ids, the ORM's joins principles) give
    verdicts and decisive principles keyed and ordered by principle position, also where the
    positions differ from the principles' id order."""

    from annotation.models import Principle

    principles = {p.key: p for p in Principle.objects.filter(principle_set=project.principle_set)}
    for offset, key in enumerate(("helpful", "harmless", "honest")):  # was harmless, honest, …
        principles[key].position = 10 + offset
        principles[key].save(update_fields=["position"])
    user = make_user("alice")
    shared = []
    for task in compare_tasks[:3]:
        a, b = response_ids(task)
        verdicts = {"honest": "tie", "harmless": a, "helpful": b}
        shared.append(judge(task, user, [[a], [b]], verdicts=verdicts,
                            decisive=["harmless", "helpful"]))  # fmt: skip
    a, b = response_ids(compare_tasks[3])
    bare = judge(compare_tasks[3], user, [[b], [a]], verdicts={"honest": "not_applicable"})
    f = dataset_filters.SnapshotFilters()
    loaders = [dataset_loaders._OrmLoader(project, f, decoding.Lookups())]
    if dataset_pg.enabled():
        loaders.append(dataset_pg.PgLoader(project, f, decoding.Lookups()))
    for loader in loaders:
        by_task = loader.judgments([t.pk for t in compare_tasks[:4]])
        for judgment in shared:
            (record,) = by_task[judgment.task_id]
            a, b = response_ids(judgment.task)
            assert list(record.verdicts.items()) == [("helpful", b), ("harmless", a),
                                                     ("honest", "tie")]  # fmt: skip
            assert record.decisive == ["helpful", "harmless"]
            assert record.ordering == [[a], [b]]
        (record,) = by_task[bare.task_id]
        assert record.verdicts == {"honest": "n/a"} and record.decisive == []
    if len(loaders) == 2:
        assert loaders[0].judgments([t.pk for t in compare_tasks]) == loaders[1].judgments(
            [t.pk for t in compare_tasks]
        )
