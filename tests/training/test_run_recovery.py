"""Issue 18 part 8, runs that never hang: a training child SIGKILLed while its worker lives is
re-queued (resuming from its checkpoint) or failed within a minute by the worker's watchdog;
replayed steps replace their metrics; a cancelled run resumes or extends from its checkpoint
(API, page, ``manage.py resume_run``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from tests.support import finished_run, start_worker, stop, wait_for
from training import services, validation
from training.models import RunMetric, TrainingRun

pytestmark = [pytest.mark.worker, pytest.mark.training, pytest.mark.django_db(transaction=True)]

BROKER_URL = settings.CELERY_BROKER_URL
FAST = {"batch_size": 4, "learning_rate": 1e-3, "max_length": 64, "eval_fraction": 0.2}
WATCH = {"TRAINING_WATCH_SECONDS": "2"}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _running(snapshot, **fields) -> TrainingRun:
    run = services.launch_run(kind="reward", snapshot=snapshot, config=FAST)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", **fields)
    return TrainingRun.objects.get(pk=run.pk)


def _one_row_per_step(run: TrainingRun) -> None:
    repeated = (
        RunMetric.objects.filter(run=run)
        .values("name", "step")
        .annotate(rows=Count("id"))
        .filter(rows__gt=1)
    )
    assert not repeated.exists(), list(repeated)


def _child_pid(run: TrainingRun, worker) -> int:
    """The training process: the worker's child that claimed the run (``host:pid``)."""
    host, _, pid = TrainingRun.objects.get(pk=run.pk).worker.rpartition(":")
    assert host == socket.gethostname() and int(pid) != worker.pid
    return int(pid)


# --- the services, without a worker ---------------------------------------------------------


def test_a_replayed_step_replaces_its_metrics(preference_snapshot):
    run = _running(preference_snapshot)
    for value in (1.0, 2.0):  # the second attempt reports step 3 again
        services.record_progress(
            run_id=run.pk, step=3, max_steps=6, logs={"loss": value, "lr": 0.1}, log_tail=""
        )
    assert list(RunMetric.objects.filter(run=run).values_list("name", "step", "value")) == [
        ("loss", 3, 2.0),
        ("lr", 3, 0.1),
    ]


def test_claim_takes_over_only_a_dead_holder(preference_snapshot, settings):
    settings.TRAINING_MAX_ATTEMPTS = 3
    host = socket.gethostname()
    live = _running(preference_snapshot, worker=f"{host}:{os.getpid()}", attempts=1)
    assert services.claim_run(run_id=live.pk, worker="x:1") is None  # a live process holds it
    dead = _running(preference_snapshot, worker=f"{host}:{_dead_pid()}", attempts=1)
    claimed = services.claim_run(run_id=dead.pk, worker=f"{host}:{os.getpid()}")
    assert claimed is not None and claimed.attempts == 2 and claimed.status == "running"
    assert services.claim_run(run_id=dead.pk, worker="y:2") is None  # now held by a live one
    exhausted = _running(preference_snapshot, worker=f"{host}:{_dead_pid()}", attempts=3)
    assert services.claim_run(run_id=exhausted.pk, worker="z:3") is None
    exhausted.refresh_from_db()
    assert exhausted.status == "failed" and services.DIED in exhausted.error


def test_watchdog_pass_requeues_a_dead_holder_and_refreshes_a_live_one(preference_snapshot):
    from training import watchdog

    host, old = socket.gethostname(), timezone.now() - timezone.timedelta(minutes=5)
    live = _running(preference_snapshot, worker=f"{host}:{os.getpid()}", heartbeat_at=old)
    dead = _running(preference_snapshot, worker=f"{host}:{_dead_pid()}", attempts=1)
    assert watchdog.check_once() == [dead.pk]
    dead.refresh_from_db()
    live.refresh_from_db()
    assert dead.status == "queued" and dead.worker == "" and dead.error == services.DIED
    assert live.status == "running" and live.heartbeat_at > old


# --- through a real worker: SIGKILL the training child while the worker lives ----------------


def test_killed_training_child_is_requeued_and_resumes_from_its_checkpoint(preference_snapshot):
    worker = start_worker(BROKER_URL, extra_env=WATCH, one_job_per_child=True)
    try:
        run = services.launch_run(
            kind="reward",
            snapshot=preference_snapshot,
            config={**FAST, "max_steps": 60, "save_steps": 10},
        )
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).current_step >= 25, timeout=180)
        killed, killed_at = timezone.now(), time.monotonic()
        os.kill(_child_pid(run, worker), signal.SIGKILL)
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).attempts == 2, timeout=60)
        assert time.monotonic() - killed_at < 60
        assert worker.poll() is None  # the worker itself lived on
        run = finished_run(run, worker)
    finally:
        log = stop(worker)
    assert run.status == "succeeded", f"{run.error}\n{log[-3000:]}"
    assert run.attempts == 2 and run.current_step == 60
    # resumed from a checkpoint (20 or later), not from scratch: steps 1-20 were trained once,
    # before the kill (a replayed step would have replaced its row, with a later time)
    early = RunMetric.objects.filter(run=run, name="loss", step__lte=20)
    assert early.count() == 20 and early.filter(logged_at__gt=killed).count() == 0
    _one_row_per_step(run)


def test_the_workers_watchdog_requeues_a_run_whose_holder_died(preference_snapshot):
    """No message left to redeliver, and the worker started before the holder died: only the
    running worker's watchdog can notice, within seconds, and the run then trains."""
    worker = start_worker(BROKER_URL, extra_env=WATCH, one_job_per_child=True)
    try:
        wait_for(lambda: " ready." in Path(worker.log_path).read_text(), timeout=60)
        config = validation.check_config("reward", {**FAST, "max_steps": 4}, 1).to_dict()
        run = TrainingRun.objects.create(  # as if a child had claimed it, acknowledged its
            kind="reward",  # message, and been killed: no message is left to redeliver
            config=config,
            max_steps=4,
            snapshot=preference_snapshot,
            base_model="builtin:tiny",
            status="running",
            worker=f"{socket.gethostname()}:{_dead_pid()}",
            heartbeat_at=timezone.now(),
            attempts=1,
        )
        dead = run.worker
        # the watchdog's pass (every 2 s) puts it back in the queue: the dead holder is gone
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).worker != dead, timeout=30)
        run = finished_run(run, worker)
    finally:
        log = stop(worker)
    assert run.status == "succeeded", f"{run.error}\n{log[-3000:]}"
    assert run.attempts == 2 and "re-queued runs whose training process died" in log


def test_killed_training_child_fails_after_its_last_attempt_then_resumes(
    preference_snapshot, admin_user
):
    worker = start_worker(
        BROKER_URL, extra_env={**WATCH, "TRAINING_MAX_ATTEMPTS": "1"}, one_job_per_child=True
    )
    try:
        run = services.launch_run(
            kind="reward",
            snapshot=preference_snapshot,
            config={**FAST, "max_steps": 40, "save_steps": 4},
        )
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).current_step >= 6, timeout=180)
        os.kill(_child_pid(run, worker), signal.SIGKILL)
        run = finished_run(run, worker, timeout=60)
        assert worker.poll() is None
        assert run.status == "failed" and "killed by signal 9" in run.error, run.error
        assert run.attempts == 1 and run.output_model_version is None
        assert services.newest_checkpoint(run) is not None  # kept: a failed run can resume

        api = APIClient()
        api.force_authenticate(admin_user)
        assert api.post(f"/api/v1/training-runs/{run.pk}/resume/").status_code == 200
        run = finished_run(run, worker)
    finally:
        log = stop(worker)
    assert run.status == "succeeded", f"{run.error}\n{log[-3000:]}"
    assert run.attempts == 2 and run.current_step == 40
    _one_row_per_step(run)


def test_cancelled_run_resumes_from_its_checkpoint_and_extends(preference_snapshot):
    worker = start_worker(BROKER_URL, extra_env=WATCH, one_job_per_child=True)
    try:
        run = services.launch_run(
            kind="reward",
            snapshot=preference_snapshot,
            config={**FAST, "max_steps": 100000, "save_steps": 50},
        )
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).current_step >= 8, timeout=180)
        services.request_cancel(run=run)
        run = finished_run(run, worker)
        assert run.status == "cancelled", run.error
        stopped_at = run.current_step
        with pytest.raises(CommandError, match="above the checkpoint"):
            call_command("resume_run", str(run.pk), "--max-steps", str(stopped_at))
        resumed_at = timezone.now()
        call_command("resume_run", str(run.pk), "--max-steps", str(stopped_at + 12))
        run = finished_run(run, worker)
    finally:
        log = stop(worker)
    assert run.status == "succeeded", f"{run.error}\n{log[-3000:]}"
    assert run.current_step == run.max_steps == run.config["max_steps"] == stopped_at + 12
    assert run.attempts == 2 and run.output_model_version is not None
    # the steps before the cancel were not trained again: their rows predate the resume
    first = RunMetric.objects.get(run=run, name="loss", step=1)
    assert first.logged_at < resumed_at
    assert RunMetric.objects.filter(run=run, name="loss", step__gt=stopped_at).count() == 12
    _one_row_per_step(run)


# --- the resume endpoint and button: who may, and clear refusals -----------------------------


def _cancelled_with_checkpoint(snapshot, step: int = 5) -> TrainingRun:
    run = services.launch_run(kind="reward", snapshot=snapshot, config={**FAST, "max_steps": 10})
    TrainingRun.objects.filter(pk=run.pk).update(status="cancelled", current_step=step)
    checkpoint = services.run_dirs(run)[1] / "checkpoints" / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    return TrainingRun.objects.get(pk=run.pk)


@pytest.mark.parametrize(
    ("role", "status"),
    [("admin", 200), ("manager", 200), ("annotator", 403), ("viewer", 403), (None, 401)],
)
def test_resume_endpoint_by_role(preference_snapshot, make_user, role, status):
    run = _cancelled_with_checkpoint(preference_snapshot)
    client = APIClient()
    if role:
        client.force_authenticate(make_user(f"{role}-user", role=role))
    response = client.post(f"/api/v1/training-runs/{run.pk}/resume/", {"max_steps": 20})
    assert response.status_code == status, response.content[:300]
    run.refresh_from_db()
    if status == 200:
        assert response.json()["status"] == "queued" and run.max_steps == 20
        assert run.status == "queued" and not run.cancel_requested
    else:
        assert run.status == "cancelled" and run.max_steps == 10


def test_resume_refusals_are_clear(preference_snapshot, admin_user, client):
    api = APIClient()
    api.force_authenticate(admin_user)
    run = _cancelled_with_checkpoint(preference_snapshot)
    low = api.post(f"/api/v1/training-runs/{run.pk}/resume/", {"max_steps": 5})
    assert low.status_code == 400 and "above the checkpoint's step 5" in low.json()["detail"]
    bare = services.launch_run(kind="reward", snapshot=preference_snapshot, config=FAST)
    queued = api.post(f"/api/v1/training-runs/{bare.pk}/resume/")
    assert queued.status_code == 409 and "only a cancelled or failed run" in queued.json()["detail"]
    TrainingRun.objects.filter(pk=bare.pk).update(status="cancelled")
    none = api.post(f"/api/v1/training-runs/{bare.pk}/resume/")
    assert none.status_code == 409 and "no checkpoint" in none.json()["detail"]
    client.force_login(admin_user)  # no checkpoint: the run page offers no resume
    page = client.get(reverse("training:run", args=[bare.pk])).content.decode()
    assert reverse("training:resume", args=[bare.pk]) not in page

    page = client.get(reverse("training:run", args=[run.pk])).content.decode()
    assert reverse("training:resume", args=[run.pk]) in page
    response = client.post(reverse("training:resume", args=[run.pk]), {"max_steps": 30})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "queued" and run.max_steps == 30
