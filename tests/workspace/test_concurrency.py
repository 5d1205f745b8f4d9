"""Concurrent annotators against a real database: nothing over-assigned, nothing lost.

Threads stand in for annotator clients (each thread has its own database connection); they
loop next_task → submit_judgment until the queue is empty. On PostgreSQL this exercises
``FOR NO KEY UPDATE SKIP LOCKED`` (and a server restart mid-load); on SQLite the
serialized ``BEGIN IMMEDIATE`` transactions.
"""

import contextlib
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.utils import InterfaceError, OperationalError

from annotation.models import Assignment, Judgment, Project, Task
from annotation.workspace import judging, leasing

DB_ERRORS = (OperationalError, InterfaceError)


class Load:
    """Shared, thread-safe results of one run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: list[
            tuple[int, int, int, str, int]
        ] = []  # annotator, lease, task, key, judgment
        self.errors: list[str] = []
        self.retries = 0

    def ack(self, row) -> None:
        with self.lock:
            self.acked.append(row)

    def retried(self) -> None:
        with self.lock:
            self.retries += 1


def _retrying(load: Load, call, *, retry: bool, deadline: float):
    while True:
        try:
            return call()
        except DB_ERRORS:
            if not retry or time.monotonic() > deadline:
                raise
            load.retried()
            with contextlib.suppress(Exception):  # the connection is already gone
                connection.close()
            time.sleep(0.2)


def annotator_client(
    annotator_id, project_id, load, start, *, retry=False, think=0.0, timeout=120.0
):
    deadline = time.monotonic() + timeout
    try:
        annotator = get_user_model().objects.get(pk=annotator_id)
        project = Project.objects.get(pk=project_id)
        start.wait()
        while time.monotonic() < deadline:
            lease = _retrying(
                load,
                lambda: leasing.next_task(annotator=annotator, project=project),
                retry=retry,
                deadline=deadline,
            )
            if lease is None:
                return
            key = uuid.uuid4().hex  # one key per lease, reused by every retry
            ids = lease.display_order
            judgment = _retrying(
                load,
                lambda lease=lease, ids=ids, key=key: judging.submit_judgment(
                    assignment=lease,
                    annotator=annotator,
                    ordering=[[ids[0]], ids[1:]],
                    strength=1,
                    verdicts={"harmless": ids[0], "honest": "tie"},
                    decisive=["harmless"],
                    idempotency_key=key,
                ),
                retry=retry,
                deadline=deadline,
            )
            load.ack((annotator_id, lease.pk, lease.task_id, key, judgment.pk))
            time.sleep(think)  # an annotator reads before the next task
        load.errors.append(f"annotator {annotator_id}: still working at the deadline")
    except Exception as exc:
        load.errors.append(f"annotator {annotator_id}: {exc!r}")
    finally:
        connection.close()


def run_clients(project, users, *, retry=False, think=0.0, during=None) -> Load:
    load = Load()
    start = threading.Barrier(len(users))
    threads = [
        threading.Thread(
            target=annotator_client,
            args=(u.pk, project.pk, load, start),
            kwargs={"retry": retry, "think": think},
        )
        for u in users
    ]
    for t in threads:
        t.start()
    if during is not None:
        during(load)
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a client hung"
    connection.close()  # the test's own connection may have died (restart) or gone stale
    return load


def assert_exactly_once(project, load: Load, *, overlap: int, tasks: int) -> None:
    assert load.errors == []
    judgments = Judgment.objects.filter(task__project=project)
    assert judgments.count() == len(load.acked) == overlap * tasks
    stored = dict(judgments.values_list("idempotency_key", "pk"))
    assert stored == {key: pk for *_, key, pk in load.acked}  # every ack, once, same row
    per_task = Counter(judgments.values_list("task_id", flat=True))
    assert set(per_task.values()) == {overlap} and len(per_task) == tasks
    pairs = Counter(judgments.values_list("task_id", "annotator_id"))
    assert max(pairs.values()) == 1  # no annotator twice on a task
    assert set(Task.objects.filter(project=project).values_list("submitted_count", flat=True)) == {
        overlap
    }
    # no lease lost: every lease handed out ended submitted, with its judgment
    leases = Assignment.objects.filter(task__project=project)
    assert leases.count() == overlap * tasks
    assert set(leases.values_list("state", flat=True)) == {Assignment.State.SUBMITTED}
    assert sorted(lease for _, lease, *_ in load.acked) == sorted(
        leases.values_list("pk", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_on_any_database(make_project, annotators):
    """Runs on SQLite too: 8 annotators, 30 tasks, overlap 2."""
    project = make_project(tasks=30, overlap=2)
    load = run_clients(project, annotators(8))
    assert_exactly_once(project, load, overlap=2, tasks=30)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_32_annotators_200_tasks_overlap_3_on_postgres(postgres_only, make_project, annotators):
    project = make_project(tasks=200, overlap=3)
    started = time.monotonic()
    load = run_clients(project, annotators(32))
    elapsed = time.monotonic() - started
    assert_exactly_once(project, load, overlap=3, tasks=200)
    print(f"\n32 annotators × 200 tasks × overlap 3: 600 judgments in {elapsed:.1f}s")


def _cluster() -> tuple[str, str]:
    (version,) = [p.name for p in Path("/etc/postgresql").iterdir()]
    return version, "main"


def restart_postgres() -> float:
    """Fast restart of the local cluster (drops every connection); returns the seconds taken."""
    version, cluster = _cluster()
    started = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return time.monotonic() - started


def ensure_postgres_running() -> None:
    version, cluster = _cluster()
    status = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "status"],
        capture_output=True,
    )
    if status.returncode != 0:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start"],
            check=True,
            timeout=60,
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_nothing_lost_when_postgres_restarts_under_load(postgres_only, make_project, annotators):
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster")
    project = make_project(tasks=150, overlap=2)
    timing = {}

    def restart_mid_load(load: Load) -> None:
        deadline = time.monotonic() + 60
        while len(load.acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        timing["acked_before"] = len(load.acked)
        try:
            timing["restart_s"] = restart_postgres()
            timing["acked_after"] = len(load.acked)
        finally:
            ensure_postgres_running()

    # think time stretches the load (~300 judgments) well past the restart
    load = run_clients(project, annotators(8), retry=True, think=0.15, during=restart_mid_load)
    assert load.retries >= 1, "no client saw the restart"
    assert timing["acked_after"] < 300, "the load ended before PostgreSQL came back"
    assert_exactly_once(project, load, overlap=2, tasks=150)
    print(
        f"\nrestart began after {timing['acked_before']} acks and took {timing['restart_s']:.1f}s "
        f"({timing['acked_after']} acks by then); {load.retries} retries; "
        "300 judgments, each exactly once"
    )
