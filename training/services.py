"""Write paths for training runs: launch, claim, progress, finish, fail, cancel, recover.

The run lifecycle is ``queued → running → succeeded | failed | cancelled``. A worker *claims* a
run atomically before training, so a redelivered message never trains the same run twice; a
worker (or training child) that dies leaves the run ``running`` with a dead holder, and
``requeue_orphaned_runs`` (at worker start and by every worker's watchdog) puts it back in the
queue, where the next attempt resumes from the newest checkpoint. A cancelled or failed run
that kept a checkpoint resumes (or extends) with ``resume_run``.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import DatasetSnapshot
from common import background, events
from common.errors import DomainError
from models_registry import storage
from models_registry.models import ModelVersion
from models_registry.services import register_model_version
from training import precedence as precedence_requests
from training import scheduling, trainers, validation
from training.models import RunGroup, RunMetric, TrainingRun
from training.trainers.common import last_checkpoint

Status = TrainingRun.Status
LOG_TAIL_CHARS = 20_000
#: kinds trained against a reference policy (their base); ORPO and SFT have none
REFERENCE_KINDS = frozenset({"dpo", "ppo", "kto"})
# A run whose holder has not reported for this long is presumed dead (another machine's worker).
# A live holder's worker refreshes it every ``TRAINING_WATCH_SECONDS`` (``training.watchdog``).
STALE_AFTER = timedelta(seconds=int(os.environ.get("RUN_STALE_SECONDS", "900")))
DIED = "the training process died (killed by signal 9?)"


def run_dirs(run: TrainingRun) -> tuple[Path, Path]:
    """(final artifact directory, work directory holding checkpoints)."""
    root = run_root(run)
    return root / "model", root / "work"


def run_root(run: TrainingRun) -> Path:
    """Everything a run writes lives under this directory."""
    return Path(settings.ARTIFACT_ROOT) / "runs" / str(run.pk)


def launch_run(
    *,
    kind: str,
    config: dict | None = None,
    snapshot: DatasetSnapshot | None = None,
    base_model: str = "builtin:tiny",
    base_model_version: ModelVersion | None = None,
    reward_model_version: ModelVersion | None = None,
    queue: str = TrainingRun.Queue.CPU,
    num_processes: int = 1,
    name: str = "",
    created_by=None,
    group: RunGroup | None = None,
    precedence: dict | None = None,
) -> TrainingRun:
    """Validate the launch (``training.validation``: config bounded and completed with the
    kind's defaults, base model, inputs), store the run, enqueue it after the commit.

    Raises ``LaunchRejected`` for a bad request, ``background.QueueUnavailable`` (503) when the
    broker refuses the job (the run is then stored as failed, never left queued).

    ``precedence`` (GRPO / PPO): train to a precedence of principles (``training.precedence``):
    the run's rewards mix principle reward models by weights from it."""
    resolved = None
    if precedence:
        if kind not in ("grpo", "ppo"):
            raise validation.LaunchRejected(
                "a precedence of principles is for GRPO and PPO runs", "precedence"
            )
        resolved = precedence_requests.resolve(precedence)
        config = precedence_requests.with_reward_spec(config or {}, resolved)
    launch = validation.validate_launch(
        kind=kind,
        config=config,
        snapshot=snapshot,
        base_model=base_model,
        base_model_version=base_model_version,
        reward_model_version=reward_model_version,
        queue=queue,
        num_processes=num_processes,
        name=name,
        principle_keys=list(resolved.versions) if resolved else [],
    )
    with transaction.atomic():
        run = TrainingRun.objects.create(
            kind=launch.kind,
            name=launch.name or f"{launch.snapshot.project.slug}-{launch.kind}",
            config=launch.config.to_dict(),
            snapshot=launch.snapshot,
            base_model=launch.base_model,
            base_model_version=launch.base_model_version,
            reward_model_version=launch.reward_model_version,
            queue=launch.queue,
            num_processes=launch.num_processes,
            max_steps=launch.config.max_steps,
            created_by=created_by,
            group=group,
            precedence=resolved.record() if resolved else {},
        )
        transaction.on_commit(lambda: enqueue(run))
    return run


#: ``training.tasks.execute_run``, sent by name: the task module is the layer above this one.
EXECUTE_RUN_TASK = "training.execute_run"


def enqueue(run: TrainingRun) -> None:
    """Publish the run's job to a worker with the GPUs it needs (``training.scheduling``), or
    leave it queued with the reason when none is live (``dispatch_waiting_runs`` sends it later).
    ``background.send_or_fail``: a broker still unreachable after a brief retry fails the run
    with the reason and raises QueueUnavailable."""
    placement = scheduling.place(run)
    if placement is None:
        reason = scheduling.waiting_text(scheduling.gpus_needed(run))
        TrainingRun.objects.filter(pk=run.pk).update(waiting_reason=reason, placed_queue="")
        return
    result = background.send_or_fail(
        EXECUTE_RUN_TASK,
        run.pk,
        kwargs={"devices": placement.devices},
        queue=placement.queue,
        what=f"run {run.pk}",
        fail=lambda message: fail_run(run_id=run.pk, error=message, log_tail=""),
    )
    TrainingRun.objects.filter(pk=run.pk).update(
        celery_task_id=result.id or "",
        waiting_reason="",
        placed_queue=placement.queue if placement.queue.startswith("worker.") else "",
    )


def dispatch_waiting_runs() -> list[int]:
    """Send the queued runs that wait for a worker with enough GPUs to one that has them now
    (a worker's ready hook calls this); the ids of the runs sent, oldest first. A run is taken
    with a conditional update, so two workers starting together never send it twice."""
    sent = []
    for run in TrainingRun.objects.filter(status=Status.QUEUED).exclude(waiting_reason=""):
        if scheduling.place(run) is None:
            continue
        taken = (
            TrainingRun.objects.filter(pk=run.pk, status=Status.QUEUED)
            .exclude(waiting_reason="")
            .update(waiting_reason="")
        )
        if taken:
            enqueue(run)
            sent.append(run.pk)
    return sent


def replace_stranded_runs() -> list[int]:
    """Queued runs sent to the own queue of a worker that is gone (no heartbeat for
    ``scheduling.STALE_AFTER``) are placed again, on a live worker or waiting for one. Should the
    old worker come back, its copy of the job finds the run taken and does nothing."""
    live = set(scheduling.live_nodes().values_list("queue", flat=True))
    replaced = []
    stranded = TrainingRun.objects.filter(status=Status.QUEUED).exclude(placed_queue="")
    for run in stranded.exclude(placed_queue__in=live):
        taken = TrainingRun.objects.filter(
            pk=run.pk, status=Status.QUEUED, placed_queue=run.placed_queue
        ).update(placed_queue="")
        if taken:
            enqueue(run)
            replaced.append(run.pk)
    return replaced


def worker_heartbeat(name: str, queues: list[str], devices: list[dict]) -> None:
    """A worker's periodic pass (``training.scheduling``): say it is alive (registering again
    if its record was removed), send it the runs that waited for its GPUs, and place again the
    runs stranded on workers that are gone."""
    if not scheduling.heartbeat(name):
        scheduling.register_worker(name, queues, devices)
    dispatch_waiting_runs()
    replace_stranded_runs()


def record_launch_config(*, run_id: int, launch_config: dict) -> None:
    """Store what a run was launched with (``training.strategies.launch_config``)."""
    TrainingRun.objects.filter(pk=run_id).update(launch_config=launch_config)


def worker_identity() -> str:
    """``host:pid`` of this process: lets a restarted worker see that a holder is dead."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_run(*, run_id: int, worker: str) -> TrainingRun | None:
    """Atomically take a queued run, or a running one whose holder is dead (Celery redelivers
    the job of a killed child): None when it is finished, cancelled or held by a live process.

    Every update is conditional on the status and holder read, so two live processes never
    both win a run."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    if run.status == Status.QUEUED:
        held = {"status": Status.QUEUED}
    elif run.status == Status.RUNNING and holder_is_gone(run):
        if run.attempts >= max_attempts():
            _give_up(run)
            return None
        held = {"status": Status.RUNNING, "worker": run.worker}
    else:
        return None
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, **held).update(
        status=Status.RUNNING,
        worker=worker,
        heartbeat_at=now,
        started_at=now,
        finished_at=None,
        error="",
        attempts=F("attempts") + 1,
    )
    return TrainingRun.objects.get(pk=run_id) if claimed else None


def record_progress(*, run_id: int, step: int, max_steps: int, logs: dict, log_tail: str) -> None:
    """Store every numeric metric of one report and move the progress bar. A step reported
    again (an attempt resumed from a checkpoint replays the steps after it) replaces the
    earlier value: one row per (run, name, step)."""
    RunMetric.objects.bulk_create(
        [
            RunMetric(run_id=run_id, step=step, name=name[:120], value=float(value))
            for name, value in logs.items()
            if isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        ],
        update_conflicts=True,
        unique_fields=["run", "name", "step"],
        update_fields=["value", "logged_at"],
    )
    TrainingRun.objects.filter(pk=run_id).update(
        current_step=step,
        max_steps=max_steps,
        progress=min(1.0, step / max_steps) if max_steps else 0.0,
        heartbeat_at=timezone.now(),
        log_tail=log_tail[-LOG_TAIL_CHARS:],
    )


def record_slurm_job(*, run_id: int, job_id: str) -> None:
    """The run's attempt was submitted to Slurm as ``job_id``."""
    TrainingRun.objects.filter(pk=run_id).update(slurm_job_id=job_id, heartbeat_at=timezone.now())


def heartbeat(*, run_id: int) -> None:
    """The run's holder is alive (e.g. while its Slurm job waits for nodes)."""
    TrainingRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())


def cancel_requested(*, run_id: int) -> bool:
    return TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists()


@transaction.atomic
def request_cancel(*, run: TrainingRun) -> TrainingRun:
    """A queued run is cancelled at once; a running one stops after its current step."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.is_finished:
        raise DomainError(f"run {run.pk} has already {run.status}")
    run.cancel_requested = True
    fields = ["cancel_requested"]
    if run.status == Status.QUEUED:
        run.status, run.finished_at = Status.CANCELLED, timezone.now()
        fields += ["status", "finished_at"]
    run.save(update_fields=fields)
    if run.status == Status.CANCELLED:
        events.publish("run.finished", run_id=run.pk, kind=run.kind, status=run.status)
    return run


def finish_run(*, run_id: int, result: trainers.TrainingResult, log_tail: str) -> TrainingRun:
    """Cancelled: keep metrics, no artifact. Succeeded: register the model version — first
    uploaded to the object store when ``ARTIFACT_STORAGE_URL`` names one (committed by its
    manifest, outside any transaction), the local copy then moved into the download cache."""
    stored = None
    if storage.remote_root() and not result.cancelled and result.artifact_path is not None:
        stored = storage.publish(Path(result.artifact_path), f"runs/{run_id}")
        if result.sha256 and stored[1] != result.sha256:
            raise RuntimeError(f"uploaded artifact sha256 {stored[1]} != trained {result.sha256}")
    return _finish_run(run_id=run_id, result=result, log_tail=log_tail, stored=stored)


@transaction.atomic
def _finish_run(
    *,
    run_id: int,
    result: trainers.TrainingResult,
    log_tail: str,
    stored: tuple[str, str, int] | None,
) -> TrainingRun:
    run = (
        TrainingRun.objects.select_for_update(of=("self",))
        .select_related("snapshot", "base_model_version", "reward_model_version")
        .get(pk=run_id)
    )
    run.eval_metrics = _json_safe(result.eval)
    run.current_step = result.global_step
    run.log_tail = log_tail[-LOG_TAIL_CHARS:]
    run.finished_at = timezone.now()
    if result.cancelled or result.artifact_path is None:
        run.status = Status.CANCELLED
    else:
        run.status = Status.SUCCEEDED
        run.progress = 1.0
        run.output_model_version = register_model_version(
            name=run.name,
            kind=run.kind,
            artifact_uri=stored[0] if stored else str(result.artifact_path),
            sha256=stored[1] if stored else result.sha256 or "",
            size_bytes=stored[2] if stored else result.size_bytes or 0,
            parents={
                "base": run.base_model_version,
                "reference": run.base_model_version if run.kind in REFERENCE_KINDS else None,
                "reward": [run.reward_model_version, *principle_reward_versions(run)],
            },
            dataset_snapshot=run.snapshot,
            eval_metrics=run.eval_metrics,
            precedence=run.precedence,
        )
    run.save()
    events.publish(
        "run.finished",
        run_id=run.pk,
        kind=run.kind,
        status=run.status,
        output_model_version_id=run.output_model_version_id,
    )
    if run.status == Status.SUCCEEDED:  # keep the model; drop checkpoints and launch files
        model_dir, root = run_dirs(run)[0], run_root(run)
        if stored:  # the store holds it: the local copy becomes this machine's cached copy
            storage.adopt(model_dir, stored[1])
        for path in root.iterdir() if root.is_dir() else ():
            if path != model_dir:
                shutil.rmtree(path, ignore_errors=True)
    return run


def principle_reward_versions(run: TrainingRun) -> list[ModelVersion]:
    """The principle reward models a run trained to a precedence was rewarded by."""
    ids = list((run.precedence.get("reward_models") or {}).values())
    return list(ModelVersion.objects.filter(pk__in=ids).order_by("pk"))


def fail_run(*, run_id: int, error: str, log_tail: str) -> None:
    """Mark a run failed with its reason and traceback; remove what it wrote (launch files, a
    model directory no version points to), except a work directory holding a checkpoint: the
    run can then resume from it (``resume_run``)."""
    TrainingRun.objects.filter(pk=run_id).update(
        status=Status.FAILED,
        error=_storable(error),
        log_tail=_storable(log_tail),
        finished_at=timezone.now(),
    )
    run = TrainingRun.objects.get(pk=run_id)
    events.publish("run.finished", run_id=run.pk, kind=run.kind, status=run.status)
    work_dir = run_dirs(run)[1]
    if run.output_model_version_id is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    elif newest_checkpoint(run) is None:
        shutil.rmtree(run_root(run), ignore_errors=True)
    else:
        for path in run_root(run).iterdir():
            if path != work_dir:
                shutil.rmtree(path, ignore_errors=True)


def newest_checkpoint(run: TrainingRun) -> Path | None:
    """The run's newest complete checkpoint, if it kept one."""
    marker = "ppo_state.pt" if run.kind == "ppo" else "trainer_state.json"  # a complete one
    found = last_checkpoint(run_dirs(run)[1] / "checkpoints", marker=marker)
    return Path(found) if found else None


def failure_text(exc: BaseException, trace: str) -> str:
    """A failed job's ``error``: one readable line (type and message), then the traceback."""
    summary = (
        f"{type(exc).__name__}: {exc}".splitlines()[0][:1000] if str(exc) else type(exc).__name__
    )
    return _storable(f"{summary}\n\n{trace[-(LOG_TAIL_CHARS - len(summary) - 2) :]}")


def _storable(text: str) -> str:
    """The tail of ``text`` that any database column takes (PostgreSQL refuses NUL)."""
    return text.replace("\x00", "\ufffd")[-LOG_TAIL_CHARS:]


def _holder_is_dead(worker: str) -> bool:
    """The holder ``host:pid`` is a process of this host that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def holder_is_gone(run: TrainingRun) -> bool:
    """A running run's holder is dead (this host) or silent for ``STALE_AFTER`` (any host)."""
    stale = run.heartbeat_at is not None and run.heartbeat_at < timezone.now() - STALE_AFTER
    return _holder_is_dead(run.worker) or stale


def max_attempts() -> int:
    """How many times a run may start before a dead holder fails it (``TRAINING_MAX_ATTEMPTS``)."""
    return settings.TRAINING_MAX_ATTEMPTS


def requeue_orphaned_runs() -> list[int]:
    """Runs held by a dead process on this host, or silent for ``STALE_AFTER``: back to queued
    (each resumes from its newest checkpoint), or failed once they used ``max_attempts()``.

    Called when a worker starts and every ``TRAINING_WATCH_SECONDS`` by its watchdog
    (``training.watchdog``), so a training child killed while its worker lives (an OOM kill)
    is noticed within seconds. Returns the ids of the runs re-queued."""
    requeued = []
    for run in TrainingRun.objects.filter(status=Status.RUNNING):
        if not holder_is_gone(run):
            continue
        if run.attempts >= max_attempts():
            _give_up(run)
            continue
        updated = TrainingRun.objects.filter(
            pk=run.pk, status=Status.RUNNING, worker=run.worker
        ).update(status=Status.QUEUED, worker="", error=DIED)
        if updated:
            requeued.append(run.pk)
            enqueue(run)
    return requeued


def _give_up(run: TrainingRun) -> None:
    """Fail a run whose holder died after its last allowed attempt (once, whoever sees it)."""
    failed = TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING, worker=run.worker)
    if failed.update(status=Status.FAILED):
        fail_run(
            run_id=run.pk,
            error=f"{DIED}; gave up after {run.attempts} attempts (TRAINING_MAX_ATTEMPTS)",
            log_tail=run.log_tail,
        )


def refresh_live_holders() -> int:
    """Refresh the heartbeat of running runs held by live processes of this host (a quiet
    but living run — loading a large model, a long evaluation — is never presumed dead)."""
    prefix = f"{socket.gethostname()}:"
    live = [
        run.pk
        for run in TrainingRun.objects.filter(status=Status.RUNNING, worker__startswith=prefix)
        if not _holder_is_dead(run.worker)
    ]
    return TrainingRun.objects.filter(pk__in=live, status=Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


RESUMABLE = (Status.CANCELLED, Status.FAILED)


class NotResumable(DomainError):
    """The run cannot resume now (its state, or no checkpoint): HTTP 409."""

    http_status = 409


@transaction.atomic
def resume_run(*, run: TrainingRun, max_steps: int | None = None) -> TrainingRun:
    """Queue a cancelled (or failed) run again from its newest checkpoint; ``max_steps`` above
    the old one extends it. Raises ``NotResumable`` (409) when the run is not cancelled or
    failed, or kept no checkpoint; ``LaunchRejected`` (400) for a bad ``max_steps``."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in RESUMABLE:
        raise NotResumable(f"run {run.pk} is {run.status}; only a cancelled or failed run resumes")
    checkpoint = newest_checkpoint(run)
    if checkpoint is None:
        raise NotResumable(
            f"run {run.pk} kept no checkpoint to resume from (save_steps was 0, or it stopped "
            "before its first checkpoint)"
        )
    reached = int(checkpoint.name.rpartition("-")[2])
    config = dict(run.config)
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= reached:
            raise validation.LaunchRejected(
                f"max_steps must be an integer above the checkpoint's step {reached}",
                "max_steps",
            )
        config["max_steps"] = max_steps
        config = validation.check_config(run.kind, config, run.num_processes).to_dict()
    run.config, run.max_steps = config, config["max_steps"]
    run.status, run.cancel_requested, run.finished_at, run.error = Status.QUEUED, False, None, ""
    run.worker, run.progress = "", min(1.0, run.current_step / run.max_steps)
    run.save()
    transaction.on_commit(lambda: enqueue(run))
    return run


def _json_safe(value):
    """Floats that JSON cannot hold (inf, nan) become strings; containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
