"""The demo's training: a tiny reward model on the personas' majority snapshot, then a tiny DPO
policy on the same snapshot, scored by that reward model (its ``reward`` parent in the lineage).

:func:`queue_demo_training` launches the reward run and queues :data:`FOLLOW_UP_TASK`, which
launches the DPO run once the reward run has succeeded (:func:`launch_policy_after`). Both
train on ``builtin:tiny`` in a few minutes on two CPU cores and are registered with their own
discretion profile, like every run.
"""

from __future__ import annotations

import logging

from django.db import transaction

from annotation.demo.seed import PERSONA_PROJECT, PERSONA_SNAPSHOT
from annotation.models import DatasetSnapshot
from common import background
from common.errors import DomainError
from training import services
from training.models import TrainingRun

log = logging.getLogger(__name__)
Status = TrainingRun.Status

REWARD_RUN, POLICY_RUN = "demo-personas-reward", "demo-personas-dpo"
LIVE = (Status.QUEUED, Status.RUNNING, Status.SUCCEEDED)  # a failed demo run may be launched again
#: ``training.tasks.launch_demo_policy``, sent by name (the task module is the layer above)
FOLLOW_UP_TASK = "training.launch_demo_policy"
REWARD_CONFIG = {
    "max_steps": 120,
    "batch_size": 16,
    "learning_rate": 2e-3,
    "max_length": 160,
    "save_steps": 0,
    "eval_fraction": 0.2,
    "seed": 0,
}
POLICY_CONFIG = {
    "max_steps": 30,
    "batch_size": 8,
    "learning_rate": 5e-4,
    "max_length": 160,
    "save_steps": 0,
    "eval_fraction": 0.1,
    "max_completion_length": 24,
    "eval_prompts": 8,
    "num_samples": 3,
    "seed": 0,
}


def demo_snapshot() -> DatasetSnapshot | None:
    return DatasetSnapshot.objects.filter(
        project__slug=PERSONA_PROJECT, name=PERSONA_SNAPSHOT, status=DatasetSnapshot.Status.READY
    ).first()


@transaction.atomic
def queue_demo_training() -> list[str]:
    """Launch the demo reward run and queue the policy's follow-up, unless a demo reward run is
    queued, running or succeeded already (then nothing is queued). Returns what was queued;
    ``DomainError`` without the seeded snapshot."""
    snapshot = demo_snapshot()
    if snapshot is None:
        raise DomainError(f"no ready {PERSONA_SNAPSHOT!r} snapshot: run seed_demo first")
    if TrainingRun.objects.filter(name=REWARD_RUN, snapshot=snapshot, status__in=LIVE).exists():
        return []
    run = services.launch_run(
        kind="reward", config=REWARD_CONFIG, snapshot=snapshot, name=REWARD_RUN
    )
    transaction.on_commit(lambda: background.send(FOLLOW_UP_TASK, run.pk))
    return [f"reward run {run.pk} queued; the DPO run {POLICY_RUN!r} follows when it succeeds"]


def launch_policy_after(reward_run_id: int) -> str:
    """Launch the demo DPO run once reward run ``reward_run_id`` has succeeded. Returns
    ``"wait"`` while it is queued or running, ``"launched"`` or ``"done"`` (it exists already),
    ``"abandoned"`` when the reward run ended without a model."""
    run = TrainingRun.objects.select_related("snapshot", "output_model_version").get(
        pk=reward_run_id
    )
    if not run.is_finished:
        return "wait"
    if run.status != Status.SUCCEEDED or run.output_model_version is None:
        log.warning("demo reward run %s ended %s: no demo policy", run.pk, run.status)
        return "abandoned"
    if TrainingRun.objects.filter(name=POLICY_RUN, snapshot=run.snapshot, status__in=LIVE).exists():
        return "done"
    services.launch_run(
        kind="dpo",
        config=POLICY_CONFIG,
        snapshot=run.snapshot,
        reward_model_version=run.output_model_version,
        name=POLICY_RUN,
    )
    return "launched"
