"""Celery entry points for training (thin). Heavy imports happen inside the task, in a child
process that serves one job only (``--max-tasks-per-child 1``)."""

import os

from celery import shared_task
from celery.signals import worker_ready

from . import services


@shared_task(name="training.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run(run_id: int) -> None:
    gpu = os.environ.get("GPU_DEVICE")
    if gpu is not None:  # a single-GPU worker pins its device before torch initialises
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    from .executor import execute

    execute(run_id)


@worker_ready.connect
def resume_orphaned_runs(**_) -> None:
    """A (re)started worker puts runs whose holder died back in the queue to resume."""
    services.requeue_orphaned_runs()
