"""Celery entry points for training (thin), the top layer: tasks -> executor / generation ->
services. torch and the training libraries load inside the job, in a child process that serves
one job only (``--max-tasks-per-child 1``), after the task has pinned its GPU."""

import os
import threading
from functools import partial

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from django.db import close_old_connections

from common import periodic
from training import demo, groups, scheduling, services, watchdog
from training.devices import probe as probe_devices
from training.executor import execute
from training.generation import execute_generation, profile_version_safely
from training.judges import runner as judge_runner
from training.judges import services as judge_services

_stopping = threading.Event()  # set when this worker shuts down: ends its heartbeat


def _pin_gpus(devices: str | None = None) -> None:
    """Make only the job's GPUs visible before torch initialises: ``devices`` the scheduler
    gave a run, else a single-GPU worker's ``GPU_DEVICE``, numbered as nvidia-smi lists them."""
    gpus = devices if devices is not None else os.environ.get("GPU_DEVICE")
    if gpus is not None:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus


@shared_task(name=services.EXECUTE_RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def execute_run(run_id: int, devices: str | None = None) -> None:
    """Train a run; ``devices``: the GPUs the scheduler gave it (``training.scheduling``)."""
    _pin_gpus(devices)
    execute(run_id)


@shared_task(name=groups.PREPARE_GROUP_TASK, acks_late=True, reject_on_worker_lost=True)
def prepare_run_group(group_id: int) -> None:
    """Build a run group's snapshots and launch its runs (``training.groups``)."""
    groups.prepare_group(group_id)


@shared_task(name="training.generate_candidates", acks_late=True, reject_on_worker_lost=True)
def generate_candidates(job_id: int) -> None:
    """The closed loop's "generate candidates" job (``training.generation``)."""
    _pin_gpus()
    execute_generation(job_id)


@shared_task(name="training.profile_model_version", acks_late=True, reject_on_worker_lost=True)
def profile_model_version(
    version_id: int,
    probe_project_id: int | None = None,
    method: str = "auto",
    reward_version_id: int | None = None,
) -> None:
    """(Re)measure a registered model's own discretion profile (``training.generation``)."""
    _pin_gpus()
    profile_version_safely(
        version_id,
        probe_project_id=probe_project_id,
        method=method,
        reward_version_id=reward_version_id,
    )


@shared_task(name=judge_services.RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def run_judge_job(job_id: int) -> None:
    """A judge job (``training.judges``): ask what is missing, record the verdicts."""
    _pin_gpus()
    judge_runner.execute(job_id)


@shared_task(name=demo.FOLLOW_UP_TASK, bind=True, max_retries=360, acks_late=True)
def launch_demo_policy(self, reward_run_id: int) -> str:
    """The demo's DPO run, launched once its reward run has succeeded (``training.demo``);
    asks again every 10 s while the reward run is queued or running."""
    outcome = demo.launch_policy_after(reward_run_id)
    if outcome == "wait":
        raise self.retry(countdown=10)
    return outcome


@worker_ready.connect
def resume_orphaned_runs(**_) -> None:
    """A (re)started worker puts runs and judge jobs whose holder died back in the queue, then
    keeps watching for training children that die while it lives (``training.watchdog``)."""
    services.requeue_orphaned_runs()
    judge_services.requeue_orphaned()
    watchdog.start()


@celeryd_after_setup.connect
def consume_own_queue(sender: str, instance, **_) -> None:
    """Each worker also consumes ``worker.<name>``, where runs placed on it are sent."""
    instance.app.amqp.queues.select_add(scheduling.node_queue(sender))


@worker_ready.connect
def report_devices(sender, **_) -> None:
    """Record this worker and its GPUs, send it the runs that waited for them, and keep the
    record fresh from a heartbeat thread (``training.scheduling``)."""
    name = sender.hostname
    own = scheduling.node_queue(name)
    queues = [q for q in sender.app.amqp.queues.consume_from if q != own]
    devices = probe_devices()
    scheduling.register_worker(name, queues, devices)
    services.dispatch_waiting_runs()
    close_old_connections()
    periodic.every(
        scheduling.HEARTBEAT_SECONDS,
        partial(services.worker_heartbeat, name, queues, devices),
        name="worker-heartbeat",
        stop=_stopping,
    )


@worker_shutdown.connect
def forget_worker(sender, **_) -> None:
    """A worker that stops cleanly takes no more placements."""
    _stopping.set()  # first the heartbeat, which would register the worker again
    scheduling.worker_gone(sender.hostname)
