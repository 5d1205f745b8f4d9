"""Write paths for training runs: launch, claim, progress, finish, fail, cancel, recover.

The run lifecycle is ``queued → running → succeeded | failed | cancelled``. A worker *claims* a
run atomically before training, so a redelivered message never trains the same run twice; a
worker that dies leaves the run ``running`` with a dead holder, and ``requeue_orphaned_runs``
puts it back in the queue, where the next attempt resumes from the newest checkpoint.
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
from models_registry.models import ModelVersion
from models_registry.services import register_model_version
from training import trainers
from training.models import RunMetric, TrainingRun

Status = TrainingRun.Status
LOG_TAIL_CHARS = 20_000
# A run whose holder has not reported for this long is presumed dead (another machine's worker).
STALE_AFTER = timedelta(seconds=int(os.environ.get("RUN_STALE_SECONDS", "900")))
SNAPSHOT_KIND_FOR = {
    "reward": "preference",
    "dpo": "preference",
    "sft": "sft",
    "grpo": None,  # any snapshot with prompts
    "ppo": None,
}


def run_dirs(run: TrainingRun) -> tuple[Path, Path]:
    """(final artifact directory, work directory holding checkpoints)."""
    root = Path(settings.ARTIFACT_ROOT) / "runs" / str(run.pk)
    return root / "model", root / "work"


def _validate_inputs(
    kind: str,
    snapshot: DatasetSnapshot | None,
    reward_model_version: ModelVersion | None,
    config: trainers.RunConfig,
) -> None:
    if snapshot is None:
        raise DomainError(f"a {kind} run needs a dataset snapshot")
    if snapshot.status != DatasetSnapshot.Status.READY:
        raise DomainError(f"snapshot {snapshot.pk} is {snapshot.status}, not ready")
    wanted = SNAPSHOT_KIND_FOR[kind]
    if wanted and snapshot.kind != wanted:
        raise DomainError(f"a {kind} run needs a {wanted} snapshot, not {snapshot.kind}")
    uses_reward_model = kind == "ppo" or any(
        spec.get("type") == "reward_model" for spec in getattr(config, "rewards", []) or []
    )
    if uses_reward_model and reward_model_version is None:
        raise DomainError(f"this {kind} run needs a reward model version")
    if reward_model_version and reward_model_version.registered_model.kind != "reward":
        raise DomainError(f"{reward_model_version} is not a reward model")


@transaction.atomic
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
) -> TrainingRun:
    """Validate the config for ``kind`` (defaults filled in), store the run, enqueue it."""
    if kind not in TrainingRun.Kind.values:
        raise DomainError(f"unknown run kind {kind!r}; choose from {TrainingRun.Kind.values}")
    if queue not in TrainingRun.Queue.values:
        raise DomainError(f"unknown queue {queue!r}; choose from {TrainingRun.Queue.values}")
    if num_processes < 1:
        raise DomainError("num_processes must be at least 1")
    try:
        validated = trainers.from_dict(kind, config or {}, world_size=num_processes)
    except ValueError as exc:
        raise DomainError(str(exc)) from exc
    _validate_inputs(kind, snapshot, reward_model_version, validated)
    if not (base_model or base_model_version):
        raise DomainError("give a base model (hub id, local path or builtin:tiny) or a version")
    run = TrainingRun.objects.create(
        kind=kind,
        name=name or f"{snapshot.project.slug}-{kind}",
        config=validated.to_dict(),
        snapshot=snapshot,
        base_model="" if base_model_version else base_model,
        base_model_version=base_model_version,
        reward_model_version=reward_model_version,
        queue=queue,
        num_processes=num_processes,
        max_steps=validated.max_steps,
        created_by=created_by,
    )
    transaction.on_commit(lambda: enqueue(run))
    return run


#: ``training.tasks.execute_run``, sent by name: the task module is the layer above this one.
EXECUTE_RUN_TASK = "training.execute_run"


def enqueue(run: TrainingRun) -> None:
    result = background.send(EXECUTE_RUN_TASK, run.pk, queue=run.queue)
    TrainingRun.objects.filter(pk=run.pk).update(celery_task_id=result.id or "")


def worker_identity() -> str:
    """``host:pid`` of this process: lets a restarted worker see that a holder is dead."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_run(*, run_id: int, worker: str) -> TrainingRun | None:
    """Atomically take a queued run; None when it is finished, cancelled or held by a live one."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=Status.QUEUED).update(
        status=Status.RUNNING,
        worker=worker,
        heartbeat_at=now,
        started_at=now,
        error="",
    )
    if not claimed:
        return None
    TrainingRun.objects.filter(pk=run_id).update(attempts=F("attempts") + 1)
    return TrainingRun.objects.get(pk=run_id)


def record_progress(*, run_id: int, step: int, max_steps: int, logs: dict, log_tail: str) -> None:
    """Store every numeric metric of one report and move the progress bar."""
    RunMetric.objects.bulk_create(
        RunMetric(run_id=run_id, step=step, name=name[:120], value=float(value))
        for name, value in logs.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )
    TrainingRun.objects.filter(pk=run_id).update(
        current_step=step,
        max_steps=max_steps,
        progress=min(1.0, step / max_steps) if max_steps else 0.0,
        heartbeat_at=timezone.now(),
        log_tail=log_tail[-LOG_TAIL_CHARS:],
    )


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


@transaction.atomic
def finish_run(*, run_id: int, result: trainers.TrainingResult, log_tail: str) -> TrainingRun:
    """Cancelled: keep metrics, no artifact. Succeeded: register the model version."""
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
            artifact_uri=str(result.artifact_path),
            sha256=result.sha256 or "",
            size_bytes=result.size_bytes or 0,
            parents={
                "base": run.base_model_version,
                "reference": run.base_model_version if run.kind in {"dpo", "ppo"} else None,
                "reward": run.reward_model_version,
            },
            dataset_snapshot=run.snapshot,
            eval_metrics=run.eval_metrics,
        )
    run.save()
    events.publish(
        "run.finished",
        run_id=run.pk,
        kind=run.kind,
        status=run.status,
        output_model_version_id=run.output_model_version_id,
    )
    _, work_dir = run_dirs(run)
    if run.status == Status.SUCCEEDED:
        shutil.rmtree(work_dir, ignore_errors=True)
    return run


def fail_run(*, run_id: int, error: str, log_tail: str) -> None:
    """Mark a run failed with its traceback; drop its checkpoints (it will not resume)."""
    TrainingRun.objects.filter(pk=run_id).update(
        status=Status.FAILED,
        error=error[-LOG_TAIL_CHARS:],
        log_tail=log_tail[-LOG_TAIL_CHARS:],
        finished_at=timezone.now(),
    )
    run = TrainingRun.objects.get(pk=run_id)
    events.publish("run.finished", run_id=run.pk, kind=run.kind, status=run.status)
    shutil.rmtree(run_dirs(run)[1], ignore_errors=True)


def _holder_is_dead(worker: str) -> bool:
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


def requeue_orphaned_runs() -> list[int]:
    """Runs held by a dead process on this host, or silent for ``STALE_AFTER``: back to queued.

    Called when a worker starts. Each re-queued run resumes from its newest checkpoint.
    """
    stale = timezone.now() - STALE_AFTER
    requeued = []
    for run in TrainingRun.objects.filter(status=Status.RUNNING):
        if not (_holder_is_dead(run.worker) or (run.heartbeat_at and run.heartbeat_at < stale)):
            continue
        updated = TrainingRun.objects.filter(
            pk=run.pk, status=Status.RUNNING, worker=run.worker
        ).update(status=Status.QUEUED, worker="")
        if updated:
            requeued.append(run.pk)
            enqueue(run)
    return requeued


def _json_safe(value):
    """Floats that JSON cannot hold (inf, nan) become strings; containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
