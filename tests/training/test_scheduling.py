"""GPU-aware placement through real Celery workers: a run needing 4 GPUs waits, visibly, while
only smaller workers live, and runs on a 4-GPU worker as soon as one starts, with its
CUDA_VISIBLE_DEVICES. Workers declare their devices with WORKER_DEVICES (this machine has no
GPU); the registration, heartbeat, placement, waiting and dispatch are the real code."""

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from tests.support import start_worker, stop, wait_for
from training import scheduling, services
from training.executor import execute
from training.models import TrainingRun, WorkerNode
from training.validation import LaunchRejected

pytestmark = [pytest.mark.django_db(transaction=True)]

BROKER_URL = settings.CELERY_BROKER_URL
POLICY = {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, "max_length": 64,
          "save_steps": 0, "eval_fraction": 0.2, "max_completion_length": 8,
          "eval_prompts": 0, "num_samples": 0}  # fmt: skip


def _node(name: str, gpus: int, queues=("gpu",), age: float = 0) -> WorkerNode:
    seen = timezone.now() - timedelta(seconds=age)
    return WorkerNode.objects.create(
        name=name,
        queue=scheduling.node_queue(name),
        queues=list(queues),
        gpus=[{"index": i, "name": "H100", "memory_mb": 81559} for i in range(gpus)],
        gpu_count=gpus,
        started_at=seen,
        last_seen=seen,
    )


def test_placement_takes_the_smallest_live_worker_that_fits(preference_snapshot):
    run = TrainingRun(queue="gpu", num_processes=4)
    assert scheduling.place(run) is None
    _node("celery@gpu-8", 8)
    _node("celery@gpu-4", 4)
    _node("celery@gpu-4-old", 4, age=3600)  # its heartbeat stopped: gone
    _node("celery@cpu-4", 4, queues=("cpu",))  # has GPUs but does not take gpu runs
    _node("celery@gpu-2", 2)
    placed = scheduling.place(run)
    assert placed == scheduling.Placement(queue="worker.celery@gpu-4", devices="0,1,2,3")
    assert scheduling.place(TrainingRun(queue="gpu", num_processes=1)).devices == "0"
    assert scheduling.place(TrainingRun(queue="gpu", num_processes=9)) is None
    assert scheduling.place(TrainingRun(queue="cpu", num_processes=2)).queue == "cpu"


def test_sharded_strategy_on_the_cpu_queue_is_refused_at_launch(preference_snapshot):
    with pytest.raises(LaunchRejected) as error:
        services.launch_run(
            kind="dpo", snapshot=preference_snapshot, config={**POLICY, "strategy": "fsdp"}
        )
    assert error.value.field == "config.strategy" and "needs a GPU worker" in str(error.value)
    assert not TrainingRun.objects.exists()


def test_api_shows_why_a_run_waits(client, admin_user, preference_snapshot):
    run = services.launch_run(
        kind="dpo", snapshot=preference_snapshot, config=POLICY, queue="gpu", num_processes=4
    )
    run.refresh_from_db()
    assert run.status == "queued" and run.waiting_reason == "waiting for a worker with 4 GPUs"
    assert run.celery_task_id == ""  # nothing was sent anywhere
    client.force_login(admin_user)
    body = client.get(f"/api/v1/training-runs/{run.pk}/").json()
    assert body["waiting_reason"] == "waiting for a worker with 4 GPUs"
    for url in (reverse("training:run", args=[run.pk]), reverse("training:runs")):
        assert "waiting for a worker with 4 GPUs" in client.get(url).content.decode()


@pytest.mark.worker
@pytest.mark.training
def test_run_waits_for_a_worker_with_four_gpus_then_runs_there(preference_snapshot):
    env = {"WORKER_HEARTBEAT_SECONDS": "1"}
    small = start_worker(
        BROKER_URL, "cpu,gpu", {**env, "WORKER_DEVICES": "1"}, True, name="small@test"
    )
    big = None
    try:
        wait_for(lambda: WorkerNode.objects.filter(name="small@test").exists(), timeout=60)
        assert WorkerNode.objects.get(name="small@test").gpu_count == 1
        run = services.launch_run(
            kind="dpo", snapshot=preference_snapshot, config=POLICY, queue="gpu", num_processes=4
        )
        beat = WorkerNode.objects.get(name="small@test").last_seen
        wait_for(lambda: WorkerNode.objects.get(name="small@test").last_seen > beat, timeout=30)
        run.refresh_from_db()  # the small worker is alive and beating, the run still waits
        assert (run.status, run.waiting_reason) == ("queued", "waiting for a worker with 4 GPUs")

        big = start_worker(BROKER_URL, "gpu", {**env, "WORKER_DEVICES": "4"}, True, name="big@test")
        run = wait_for(
            lambda: TrainingRun.objects.filter(
                pk=run.pk, status__in=["succeeded", "failed", "cancelled"]
            ).first(),
            timeout=240,
            interval=0.5,
        )
    except Exception as exc:
        raise AssertionError(f"{exc}\n{stop(small)}\n{stop(big) if big else ''}") from exc
    small_log, big_log = stop(small), stop(big)
    assert run.status == "succeeded", f"{run.error}\n{run.log_tail[-3000:]}\n{big_log[-3000:]}"
    assert f"training.execute_run[{run.celery_task_id}] received" in big_log
    assert run.celery_task_id not in small_log
    assert run.waiting_reason == ""
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3" in run.log_tail
    assert run.launch_config["cuda_visible_devices"] == "0,1,2,3"
    assert run.launch_config["num_processes"] == 4 and run.launch_config["launcher"] == "torchrun"
    assert run.output_model_version_id
    # both workers stopped cleanly: neither is offered for placement any more
    assert not WorkerNode.objects.filter(name__in=["small@test", "big@test"]).exists()


@pytest.mark.training
def test_executor_records_the_launch_and_a_cpu_machine_refuses_deepspeed(preference_snapshot):
    """A sharded strategy always goes through torchrun (one process too); the launch config is
    stored on the run and written to its launch directory before the children start."""
    run = services.launch_run(
        kind="dpo",
        snapshot=preference_snapshot,
        config={**POLICY, "strategy": "deepspeed-zero2", "offload_optimizer": True},
        queue="gpu",
    )
    launch_dir, written = services.run_root(run) / "launch", {}
    real_fail = services.fail_run

    def fail_run(**kwargs) -> None:  # a failed run's files are removed: read them first
        written.update({p.name: json.loads(p.read_text()) for p in launch_dir.glob("*.json")})
        real_fail(**kwargs)

    with mock.patch.object(services, "fail_run", side_effect=fail_run):
        execute(run.pk)  # what the Celery task runs once a worker has the GPU
    run.refresh_from_db()
    assert run.status == "failed" and "needs a GPU worker" in run.error
    launch = run.launch_config
    assert launch["launcher"] == "torchrun" and "--nproc_per_node=1" in launch["command"]
    zero = launch["training_arguments"]["deepspeed"]["zero_optimization"]
    assert zero["stage"] == 2 and zero["offload_optimizer"]["device"] == "cpu"
    assert written["deepspeed.json"]["zero_optimization"] == zero
    assert written["launch_config.json"] == launch
    assert written["accelerate_config.json"]["distributed_type"] == "DEEPSPEED"


def test_a_run_placed_on_a_vanished_worker_is_placed_again(preference_snapshot):
    _node("celery@gpu-a", 2)
    run = services.launch_run(
        kind="dpo", snapshot=preference_snapshot, config=POLICY, queue="gpu", num_processes=2
    )
    run.refresh_from_db()
    first_task = run.celery_task_id
    assert (run.placed_queue, run.waiting_reason) == ("worker.celery@gpu-a", "")
    assert services.replace_stranded_runs() == []  # its worker is alive: nothing to do

    WorkerNode.objects.filter(name="celery@gpu-a").update(
        last_seen=timezone.now() - scheduling.STALE_AFTER - timedelta(seconds=1)
    )
    assert services.replace_stranded_runs() == [run.pk]  # no worker fits now: it waits
    run.refresh_from_db()
    assert (run.placed_queue, run.waiting_reason) == ("", "waiting for a worker with 2 GPUs")

    _node("celery@gpu-b", 4)
    assert services.dispatch_waiting_runs() == [run.pk]
    run.refresh_from_db()
    assert (run.placed_queue, run.waiting_reason) == ("worker.celery@gpu-b", "")
    assert run.celery_task_id not in ("", first_task)


def test_the_launch_form_offers_the_strategy_and_says_why_it_is_refused(
    client, admin_user, preference_snapshot
):
    client.force_login(admin_user)
    url = reverse("training:launch", args=["dpo"])
    form = {"snapshot": preference_snapshot.pk, "num_processes": 2, "config_strategy": "fsdp"}
    refused = client.post(url, {**form, "queue": "cpu"})
    assert refused.status_code == 200 and b"needs a GPU worker" in refused.content
    assert not TrainingRun.objects.exists()
    accepted = client.post(url, {**form, "queue": "gpu"})
    run = TrainingRun.objects.get()
    assert accepted.status_code == 302 and run.config["strategy"] == "fsdp"
    page = client.get(reverse("training:run", args=[run.pk])).content.decode()
    assert 'data-testid="run-waiting">waiting for a worker with 2 GPUs<' in page
