"""Celery entry points for training (thin), the top layer: tasks -> executor / generation ->
services. torch and the training libraries load inside the job, in a child process that serves
one job only (``--max-tasks-per-child 1``), after the task has pinned its GPU."""

import os

from celery import shared_task
from celery.signals import worker_ready

from training import demo, groups, services, watchdog
from training.executor import execute
from training.generation import execute_generation, profile_version_safely
from training.judges import runner as judge_runner
from training.judges import services as judge_services


@shared_task(name=services.EXECUTE_RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def execute_run(run_id: int) -> None:
    gpu = os.environ.get("GPU_DEVICE")
    if gpu is not None:  # a single-GPU worker pins its device before torch initialises
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    execute(run_id)


@shared_task(name=groups.PREPARE_GROUP_TASK, acks_late=True, reject_on_worker_lost=True)
def prepare_run_group(group_id: int) -> None:
    """Build a run group's snapshots and launch its runs (``training.groups``)."""
    groups.prepare_group(group_id)


@shared_task(name="training.generate_candidates", acks_late=True, reject_on_worker_lost=True)
def generate_candidates(job_id: int) -> None:
    """The closed loop's "generate candidates" job (``training.generation``)."""
    gpu = os.environ.get("GPU_DEVICE")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    execute_generation(job_id)


@shared_task(name="training.profile_model_version", acks_late=True, reject_on_worker_lost=True)
def profile_model_version(
    version_id: int,
    probe_project_id: int | None = None,
    method: str = "auto",
    reward_version_id: int | None = None,
) -> None:
    """(Re)measure a registered model's own discretion profile (``training.generation``)."""
    gpu = os.environ.get("GPU_DEVICE")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    profile_version_safely(
        version_id,
        probe_project_id=probe_project_id,
        method=method,
        reward_version_id=reward_version_id,
    )


@shared_task(name=judge_services.RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def run_judge_job(job_id: int) -> None:
    """A judge job (``training.judges``): ask what is missing, record the verdicts."""
    gpu = os.environ.get("GPU_DEVICE")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
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
