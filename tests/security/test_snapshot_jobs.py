"""Snapshot jobs never stuck (issue 17): any error marks the snapshot failed with a message and
leaves no file; a worker SIGKILLed mid-snapshot never leaves it half-written and ready."""

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from annotation.datasets import filters as dataset_filters
from annotation.datasets import snapshots
from annotation.models import DatasetSnapshot, Judgment, Prompt, Task
from annotation.tasks import build_snapshot as build_snapshot_task
from common.process_lock import ProcessLock
from config.celery import app
from tests.security.test_exports import judged_in_bulk
from tests.support import REPO, kill_tree, start_worker, stop, wait_for

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def files(root: Path) -> list[str]:
    folder = Path(root) / "snapshots"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def queued_snapshot(project, kind: str = "preference") -> DatasetSnapshot:
    """A snapshot recorded as ``create_snapshot(run="async")`` records it, not yet queued."""
    options, f, _ = dataset_filters.prepare(project=project, kind=kind)
    return DatasetSnapshot.objects.create(
        project=project,
        principle_set=project.principle_set,
        kind=kind,
        filters=dataset_filters.frozen_record(project, options, f),
    )


@pytest.mark.django_db
def test_an_unusable_artifact_root_fails_the_snapshot_instead_of_leaving_it_building(
    project, compare_tasks, make_user, settings, tmp_path
):
    """Was: the folder was made outside the error handling, so the exception escaped (a 500
    inline, a crashed task on Celery) and the snapshot stayed "building" for ever."""
    Judgment.objects.create(task=compare_tasks[0], annotator=make_user("a"), ordering=[[1], [2]])
    not_a_folder = tmp_path / "artifacts-is-a-file"
    not_a_folder.write_text("")
    settings.ARTIFACT_ROOT = not_a_folder
    inline = snapshots.create_snapshot(project=project, kind="preference", run="inline")
    assert inline.status == DatasetSnapshot.Status.FAILED
    assert inline.error.startswith("cannot write under ARTIFACT_ROOT: ")
    queued = queued_snapshot(project)
    result = build_snapshot_task.apply(args=(queued.pk,)).get()  # the Celery task's own code
    queued.refresh_from_db()
    assert result["status"] == queued.status == DatasetSnapshot.Status.FAILED
    assert "ARTIFACT_ROOT" in queued.error and not queued.sha256


@pytest.mark.django_db
def test_a_row_that_breaks_mid_stream_fails_the_snapshot_and_removes_its_files(project, settings):
    """A prompt message without content (written past validation) breaks the text rendering
    after earlier batches were written: failed with the error, no temporary file, no lock."""
    judged_in_bulk(project, tasks=120, annotators=1)
    last = Task.objects.filter(project=project).order_by("-id").first()
    Prompt.objects.filter(pk=last.prompt_id).update(messages=[{"role": "user"}])
    settings.SNAPSHOT_BATCH_JUDGMENTS = 8  # several batches written before the broken one
    for fmt in ("jsonl", "parquet"):
        snapshot = snapshots.create_snapshot(
            project=project, kind="preference", fmt=fmt, filters={"style": "text"}, run="inline"
        )
        assert snapshot.status == DatasetSnapshot.Status.FAILED, fmt
        assert snapshot.error == "KeyError: 'content'"
        assert not snapshot.artifact_path and not snapshot.sha256
        assert files(settings.ARTIFACT_ROOT) == []


def test_a_process_lock_outlives_nothing_but_its_holder(tmp_path):
    """The lock of a live process cannot be taken over; once it is SIGKILLed, it can."""
    path = tmp_path / "job.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from common.process_lock import ProcessLock;"
         f"assert ProcessLock({str(path)!r}).acquire(); print('held', flush=True);"
         "time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not ProcessLock(path).take_over() and not ProcessLock(path).acquire()
        assert path.read_text().split()[1] == str(holder.pid)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = ProcessLock(path)
    assert lock.take_over()
    lock.release(remove=True)
    assert not path.exists() and not ProcessLock(path).take_over()


# ---------------------------------------------------------------- a real worker, SIGKILLed

SLOW = {"SNAPSHOT_BATCH_JUDGMENTS": "1"}  # one read batch per 8 tasks: a build of seconds


@pytest.fixture
def redis_queue():
    """The test's Redis database, empty before and after (an unacknowledged message of a
    killed worker must not reach a later test's worker)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def send_build(snapshot: DatasetSnapshot) -> None:
    with app.connection_for_write(REDIS_URL) as connection:
        build_snapshot_task.apply_async((snapshot.pk,), connection=connection, queue="cpu")


def building_with_rows_written(snapshot: DatasetSnapshot, root: Path) -> bool:
    """The build is under way: rows are in its temporary file, the snapshot is building."""
    folder = Path(root) / "snapshots"
    parts = [p for p in folder.glob(f".snapshot-{snapshot.pk}-*.part") if p.stat().st_size]
    snapshot.refresh_from_db()
    assert snapshot.status == DatasetSnapshot.Status.BUILDING, snapshot.error
    return bool(parts)


def pool_processes(worker: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.mark.worker
@pytest.mark.timeout(600)
@pytest.mark.django_db(transaction=True)
def test_a_worker_sigkilled_mid_snapshot_leaves_it_failed_never_half_written_and_ready(
    project, redis_queue, isolated_artifacts
):
    """The whole worker (main process and pool) is SIGKILLed while the snapshot is written: the
    snapshot is still "building", its partial file is not ready anywhere. The next worker to
    start finds the snapshot's lock file that nobody holds, marks it failed with a message and
    removes the partial file (Redis would hand the unacknowledged message again only after its
    visibility timeout, 24 h, and that build then sees the snapshot failed and does nothing)."""
    judged_in_bulk(project, tasks=3_000, annotators=1)
    snapshot = queued_snapshot(project)
    worker = start_worker(redis_queue, extra_env=SLOW)
    try:
        send_build(snapshot)
        wait_for(lambda: building_with_rows_written(snapshot, isolated_artifacts), timeout=180)
    except Exception as exc:  # whatever failed, the worker is stopped
        raise AssertionError(f"{exc}\nworker output:\n{stop(worker)}") from exc
    kill_tree(worker)
    snapshot.refresh_from_db()
    assert snapshot.status == DatasetSnapshot.Status.BUILDING and not snapshot.sha256
    left = files(isolated_artifacts)
    assert any(name.endswith(".part") for name in left), left
    assert not any(name.startswith("snapshot-") for name in left), left  # nothing final
    assert not DatasetSnapshot.objects.filter(status=DatasetSnapshot.Status.READY).exists()

    worker = start_worker(redis_queue, extra_env=SLOW)
    try:
        failed = wait_for(
            lambda: DatasetSnapshot.objects.filter(
                pk=snapshot.pk, status=DatasetSnapshot.Status.FAILED
            ).first(),
            timeout=120,
        )
    except Exception as exc:  # whatever failed, the worker is stopped
        raise AssertionError(f"{exc}\nworker output:\n{stop(worker)}") from exc
    stop(worker)
    assert failed.error == snapshots.WORKER_LOST
    assert not failed.sha256 and not failed.artifact_path
    assert files(isolated_artifacts) == []  # partial file and lock removed


@pytest.mark.worker
@pytest.mark.timeout(600)
@pytest.mark.django_db(transaction=True)
def test_a_pool_process_sigkilled_mid_snapshot_is_built_again_complete_and_correct(
    project, redis_queue, isolated_artifacts
):
    """The pool process building the snapshot is SIGKILLed (as the OOM killer does) while its
    worker lives: the task is handed again (acks late, reject on worker lost) to a new pool
    process, which finds the dead builder's lock, removes its partial file and builds the
    snapshot from scratch: ready, sha256 of the file, the rows an inline build writes."""
    count = judged_in_bulk(project, tasks=3_000, annotators=1)
    snapshot = queued_snapshot(project)
    worker = start_worker(redis_queue, extra_env=SLOW)
    try:
        send_build(snapshot)
        wait_for(lambda: building_with_rows_written(snapshot, isolated_artifacts), timeout=180)
        (first,) = pool_processes(worker)
        os.kill(first, signal.SIGKILL)
        snapshot.refresh_from_db()
        assert snapshot.status == DatasetSnapshot.Status.BUILDING
        rebuilt = wait_for(
            lambda: (
                DatasetSnapshot.objects.filter(pk=snapshot.pk)
                .exclude(status=DatasetSnapshot.Status.BUILDING)
                .first()
            ),
            timeout=300,
        )
        assert pool_processes(worker) != [first]
    except Exception as exc:  # whatever failed, the worker is stopped
        raise AssertionError(f"{exc}\nworker output:\n{stop(worker)}") from exc
    output = stop(worker)
    assert rebuilt.status == DatasetSnapshot.Status.READY, (rebuilt.error, output)
    assert "WorkerLostError" in output or "SIGKILL" in output, output
    path = snapshots.artifact_file(rebuilt)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rebuilt.sha256
    assert rebuilt.row_count == count == len(path.read_bytes().splitlines())
    assert files(isolated_artifacts) == [path.name]  # the first build's partial file is gone
    inline = snapshots.create_snapshot(project=project, kind="preference", run="inline")
    assert inline.sha256 == rebuilt.sha256
