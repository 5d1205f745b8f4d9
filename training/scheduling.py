"""GPU-aware placement of runs on workers.

Every worker records itself as a :class:`WorkerNode` when it starts (its devices from
``training.devices``) and refreshes ``last_seen`` on a heartbeat; it also consumes its own queue
``worker.<name>``. A run on the ``gpu`` queue needs ``num_processes`` GPUs: it is sent to the
own queue of a live node that consumes ``gpu`` and has at least that many (the smallest such
node, so big nodes stay free for big runs), with the node's first N devices as its
``CUDA_VISIBLE_DEVICES``. With no such node the run stays queued with a visible reason and is
dispatched when one starts (``services.dispatch_waiting_runs`` from the worker's ready hook).
Runs on the ``cpu`` queue need no GPU and go to the shared ``cpu`` queue as before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from training.models import TrainingRun, WorkerNode

#: how often a worker refreshes ``last_seen``, and after how long without it a node is gone
HEARTBEAT_SECONDS = float(os.environ.get("WORKER_HEARTBEAT_SECONDS", "30"))
STALE_AFTER = timedelta(seconds=float(os.environ.get("WORKER_STALE_SECONDS", "120")))


@dataclass(frozen=True)
class Placement:
    """Where a run goes: the Celery queue, and its CUDA_VISIBLE_DEVICES (None: leave as is)."""

    queue: str
    devices: str | None = None


def node_queue(name: str) -> str:
    """The queue only the worker ``name`` consumes (broker-safe characters)."""
    return "worker." + re.sub(r"[^\w.@-]", "-", name)


def gpus_needed(run: TrainingRun) -> int:
    """GPUs a run needs: one per process on the gpu queue, none on the cpu queue."""
    return run.num_processes if run.queue == TrainingRun.Queue.GPU else 0


def waiting_text(gpus: int) -> str:
    return f"waiting for a worker with {gpus} GPU{'s' if gpus != 1 else ''}"


def register_worker(name: str, queues: list[str], devices: list[dict]) -> WorkerNode:
    """A worker (re)started: record its queues and devices, live from now."""
    now = timezone.now()
    node, _ = WorkerNode.objects.update_or_create(
        name=name,
        defaults={
            "queue": node_queue(name),
            "queues": sorted(queues),
            "gpus": devices,
            "gpu_count": len(devices),
            "started_at": now,
            "last_seen": now,
        },
    )
    return node


def heartbeat(name: str) -> bool:
    """The worker is alive; False when it has no record (then it registers again)."""
    return bool(WorkerNode.objects.filter(name=name).update(last_seen=timezone.now()))


def worker_gone(name: str) -> None:
    """A worker shut down cleanly: nothing is placed on it any more."""
    WorkerNode.objects.filter(name=name).delete()


def live_nodes():
    return WorkerNode.objects.filter(last_seen__gte=timezone.now() - STALE_AFTER)


def place(run: TrainingRun) -> Placement | None:
    """Where ``run`` can go now; None while no live worker has the GPUs it needs."""
    needed = gpus_needed(run)
    if not needed:
        return Placement(queue=run.queue)
    candidates = [
        node
        for node in live_nodes().filter(gpu_count__gte=needed).order_by("gpu_count", "name")
        if run.queue in node.queues
    ]
    if not candidates:
        return None
    node = candidates[0]
    indices = sorted(device["index"] for device in node.gpus)[:needed]
    return Placement(queue=node.queue, devices=",".join(str(i) for i in indices))
