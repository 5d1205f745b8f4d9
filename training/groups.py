"""Run groups: "reward per principle" trains one reward model per principle in one launch.

``launch_principle_rewards`` checks everything a request can get wrong (run config, base
model, queue, snapshot filters, principle keys), records the group and queues
``training.prepare_run_group``. On a worker, ``prepare_group`` builds each principle's
preference snapshot (chosen / rejected by that principle's verdicts, from the verdict source
the filters select) and launches a reward run on every one with at least ``min_pairs`` pairs,
all in one transaction: a worker that dies half-way leaves no half-launched group, and the
redelivered job starts again. Each run's model version names its snapshot, hence its
principle (``snapshot.filters["principle"]``), in its lineage.
"""

from __future__ import annotations

import traceback
from functools import partial

from django.db import transaction

from annotation.datasets import snapshots
from annotation.datasets.filters import prepare
from annotation.models import DatasetSnapshot, Project
from common import background
from common.errors import DomainError
from models_registry.models import ModelVersion
from training import services, validation
from training.models import RunGroup, TrainingRun

PREPARE_GROUP_TASK = "training.prepare_run_group"
MIN_PAIRS_DEFAULT = 20
MIN_PAIRS_MAX = 2**31 - 1  # what the column holds on every database


def launch_principle_rewards(
    *,
    project: Project,
    filters: dict | None = None,
    aggregation: str = "raw",
    keys: list[str] | None = None,
    min_pairs: int = MIN_PAIRS_DEFAULT,
    config: dict | None = None,
    base_model: str = "builtin:tiny",
    base_model_version: ModelVersion | None = None,
    queue: str = TrainingRun.Queue.CPU,
    num_processes: int = 1,
    name: str = "",
    created_by=None,
) -> RunGroup:
    """Validate and record a "reward per principle" group; a worker prepares and launches it.
    Raises ``LaunchRejected`` / ``DomainError`` (400) on a bad request."""
    if queue not in TrainingRun.Queue.values:
        raise validation.LaunchRejected(f"unknown queue {queue!r:.50}", "queue")
    processes = validation.check_processes(num_processes)
    run_config = validation.check_config("reward", config, processes)
    base_model, base_model_version = validation.check_base_model(base_model, base_model_version)
    validation.check_base_exists(base_model)
    validation.check_devices(run_config, queue)
    if (
        isinstance(min_pairs, bool)
        or not isinstance(min_pairs, int)
        or not 1 <= min_pairs <= MIN_PAIRS_MAX
    ):
        raise validation.LaunchRejected(
            f"min_pairs must be a whole number from 1 to {MIN_PAIRS_MAX}", "min_pairs"
        )
    known = list(
        project.principle_set.principles.order_by("position").values_list("key", flat=True)
    )
    keys = list(keys) if keys else known
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise validation.LaunchRejected(
            f"not principles of {project.principle_set.label}: {', '.join(map(str, unknown))}",
            "keys",
        )
    filters = dict(filters or {})
    filters.pop("principle", None)
    prepare(
        project=project,
        kind="preference",
        aggregation=aggregation,
        filters={**filters, "principle": keys[0]},
    )
    with transaction.atomic():
        group = RunGroup.objects.create(
            name=(name or f"{project.slug}-reward-per-principle")[:200],
            project=project,
            min_pairs=min_pairs,
            request={
                "filters": filters,
                "aggregation": aggregation,
                "keys": keys,
                "config": run_config.to_dict(),
                "base_model": base_model,
                "base_model_version": base_model_version.pk if base_model_version else None,
                "queue": queue,
                "num_processes": processes,
            },
            created_by=created_by,
        )
        transaction.on_commit(
            partial(
                background.send_or_fail,
                PREPARE_GROUP_TASK,
                group.pk,
                what=f"run group {group.pk}",
                fail=partial(_fail, group.pk),
            )
        )
    return group


def prepare_group(group_id: int) -> RunGroup:
    """Build the group's per-principle snapshots and launch its runs (worker side; a group
    that is no longer preparing is left as it is, so a redelivered job does nothing twice)."""
    group = RunGroup.objects.select_related("project").get(pk=group_id)
    if group.status != RunGroup.Status.PREPARING:
        return group
    request = group.request
    try:
        with transaction.atomic():
            built = snapshots.create_principle_snapshots(
                project=group.project,
                keys=request["keys"],
                filters=request["filters"],
                aggregation=request["aggregation"],
                name=group.name,
                created_by=group.created_by,
                run="inline",
            )
            launched = _launch_runs(group, built)
            if not launched:
                raise DomainError(
                    f"no principle has {group.min_pairs} pairs or more: "
                    + ", ".join(f"{key} {n}" for key, n in group.skipped.items())
                )
            group.status = RunGroup.Status.LAUNCHED
            group.save(update_fields=["status", "skipped"])
    except DomainError as exc:
        _fail(group.pk, str(exc), skipped=group.skipped)
        group.refresh_from_db()
    except Exception as exc:  # a crash is recorded with its traceback, then re-raised
        _fail(group.pk, services.failure_text(exc, traceback.format_exc()))
        raise
    return group


def _launch_runs(group: RunGroup, built: list[DatasetSnapshot]) -> list[TrainingRun]:
    request = group.request
    version_id = request["base_model_version"]
    base_version = ModelVersion.objects.get(pk=version_id) if version_id else None
    launched, group.skipped = [], {}
    for snapshot in built:
        key = snapshot.filters["principle"]
        if snapshot.status != DatasetSnapshot.Status.READY:
            raise DomainError(f"the snapshot of principle {key} failed: {snapshot.error}")
        if snapshot.row_count < group.min_pairs:
            group.skipped[key] = snapshot.row_count
            continue
        launched.append(
            services.launch_run(
                kind="reward",
                config=request["config"],
                snapshot=snapshot,
                base_model=request["base_model"],
                base_model_version=base_version,
                queue=request["queue"],
                num_processes=request["num_processes"],
                name=f"{group.name}-{key}",
                created_by=group.created_by,
                group=group,
            )
        )
    return launched


def _fail(group_id: int, message: str, *, skipped: dict | None = None) -> None:
    RunGroup.objects.filter(pk=group_id).update(
        status=RunGroup.Status.FAILED, error=message, skipped=skipped or {}
    )
