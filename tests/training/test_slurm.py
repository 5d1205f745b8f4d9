"""The Slurm launcher against a real single-node Slurm (``scripts/slurm-test-cluster``): runs on
the ``slurm`` queue go through ``services.launch_run`` to a real Celery worker, which submits
them with ``sbatch`` as 2-task jobs (two torchrun agents, one process each, a gloo c10d
rendezvous on the one node: two "nodes") and supervises them."""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient

from tests.support import finished_run, start_worker, stop, wait_for
from training import services, slurm
from training.models import RunMetric, TrainingRun


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return done.returncode == 0 and bool(re.search(r"idle|mixed|allocated", done.stdout))


pytestmark = pytest.mark.slurm
LIVE = [
    pytest.mark.training,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not _slurm_up(), reason="no Slurm here"),
]


def live(test):
    """A test against the real Slurm, through a real Celery worker."""
    for mark in LIVE:
        test = mark(test)
    return test


FAST = {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3, "max_length": 64,
        "save_steps": 0, "eval_fraction": 0.2}  # fmt: skip
SLURM_ENV = {
    "TRAINING_SLURM_QUEUES": "slurm",
    "TRAINING_SLURM_NODES": "1",
    "TRAINING_SLURM_TASKS_PER_NODE": "2",  # two torchrun agents on the one node: two "nodes"
    "TRAINING_SLURM_CPUS_PER_TASK": "1",
    "TRAINING_SLURM_POLL_SECONDS": "0.5",
}


@pytest.fixture
def worker():
    process = start_worker(settings.CELERY_BROKER_URL, queues="slurm", extra_env=SLURM_ENV)
    yield process
    stop(process)
    for job_id in TrainingRun.objects.exclude(slurm_job_id="").values_list("slurm_job_id"):
        subprocess.run(["scancel", *job_id], capture_output=True)  # a job a failed test left


def _agents(run: TrainingRun) -> list[int]:
    """PIDs of the run's torchrun agents (one per Slurm task)."""
    spec = str(services.run_root(run) / "launch" / "spec.json")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        is_agent = Path(argv[0].decode()).name.startswith("python")  # not srun's own processes
        if is_agent and b"torch.distributed.run" in argv and spec.encode() in argv:
            pids.append(int(entry.name))
    return pids


def _run_processes(run: TrainingRun) -> list[int]:
    """PIDs of any process (agent or rank) still working on the run."""
    marker = str(services.run_root(run)).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _running(run: TrainingRun, steps: int, worker) -> None:
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).current_step >= steps, timeout=180)
    except Exception as exc:
        run.refresh_from_db()
        raise AssertionError(f"{exc}\n{run.log_tail[-3000:]}\n{stop(worker)}") from exc


def test_batch_script_asks_for_the_configured_allocation(settings, tmp_path):
    settings.TRAINING_SLURM_NODES, settings.TRAINING_SLURM_GPUS_PER_NODE = 4, 8
    settings.TRAINING_SLURM_PARTITION, settings.TRAINING_SLURM_TIME_LIMIT = "gpu", "2:00:00"
    settings.TRAINING_SLURM_EXTRA_ARGS = "--account=ml --qos='high prio'"
    run = TrainingRun(pk=7, num_processes=8)
    script = slurm.batch_script(run, tmp_path / "spec.json", tmp_path / "slurm.log")
    options = re.findall(r"^#SBATCH (.+)$", script, re.MULTILINE)
    assert options == [
        "--job-name=run-7", "--nodes=4", "--ntasks-per-node=1", "--cpus-per-task=1",
        "--requeue", "--open-mode=append", f"--output={tmp_path / 'slurm.log'}",
        f"--chdir={settings.BASE_DIR}", "--gres=gpu:8", "--partition=gpu", "--time=2:00:00",
        "--account=ml", "'--qos=high prio'",
    ]  # fmt: skip
    (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
    assert "--nproc_per_node=8 --rdzv-backend=c10d --nnodes=$SLURM_NTASKS" in srun
    assert f"--spec {tmp_path / 'spec.json'}" in srun
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # valid shell


@live
def test_two_node_job_trains_and_registers(worker, preference_snapshot, admin_user, client):
    api = APIClient()
    api.force_authenticate(admin_user)
    made = api.post("/api/v1/training-runs/", {"kind": "reward", "queue": "slurm",
                    "snapshot": preference_snapshot.pk, "config": FAST}, format="json")  # fmt: skip
    assert made.status_code == 201, made.content
    run = finished_run(TrainingRun.objects.get(pk=made.json()["id"]), worker)
    assert run.status == "succeeded", f"{run.error}\n{run.log_tail[-3000:]}"
    version = run.output_model_version
    assert version is not None and len(version.sha256) == 64 and version.size_bytes > 0
    assert Path(version.artifact_uri, "config.json").is_file()
    assert RunMetric.objects.filter(run=run, name="loss").count() == FAST["max_steps"]
    assert run.progress == 1.0 and run.current_step == FAST["max_steps"]
    assert slurm.job_info(run.slurm_job_id)["NumTasks"] == "2"
    # both agents met at the rendezvous: one world of two "nodes"
    assert f"Slurm job {run.slurm_job_id}: succeeded, world size 2" in run.log_tail, run.log_tail
    assert f"submitted Slurm job {run.slurm_job_id}" in run.log_tail
    assert not services.run_dirs(run)[1].exists()  # checkpoints and launch files cleaned
    assert api.get(f"/api/v1/training-runs/{run.pk}/").json()["slurm_job_id"] == run.slurm_job_id
    client.force_login(admin_user)
    page = client.get(reverse("training:run", args=[run.pk])).content.decode()
    assert f"Slurm job {run.slurm_job_id}" in page


@live
def test_cancel_scancels_the_job(worker, preference_snapshot):
    run = services.launch_run(kind="reward", queue="slurm", snapshot=preference_snapshot,
                              config={**FAST, "max_steps": 100000})  # fmt: skip
    _running(run, 2, worker)
    services.request_cancel(run=run)
    run = finished_run(run, worker, timeout=90)
    assert run.status == "cancelled", f"{run.error}\n{run.log_tail[-3000:]}"
    assert run.output_model_version is None and run.current_step >= 2
    assert slurm.job_info(run.slurm_job_id)["JobState"] == "CANCELLED"
    wait_for(lambda: not _run_processes(run), timeout=30)  # nothing of the job lives on


@live
def test_killed_node_task_fails_the_run_with_the_reason(worker, preference_snapshot):
    run = services.launch_run(kind="reward", queue="slurm", snapshot=preference_snapshot,
                              config={**FAST, "max_steps": 100000})  # fmt: skip
    _running(run, 2, worker)
    agents = _agents(run)
    assert len(agents) == 2, agents
    os.kill(max(agents), signal.SIGKILL)  # one "node"'s torchrun dies (an OOM kill, a crash)
    run = finished_run(run, worker, timeout=120)
    assert run.status == "failed", f"{run.status}\n{run.log_tail[-3000:]}"
    assert f"Slurm job {run.slurm_job_id} ended FAILED" in run.error, run.error
    assert slurm.job_info(run.slurm_job_id)["JobState"] == "FAILED"
    assert run.output_model_version is None
    wait_for(lambda: not _run_processes(run), timeout=30)  # the other task was killed too


def _node_is_up() -> bool:
    state = subprocess.run(
        ["sinfo", "-h", "-N", "-n", "localhost", "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()
    return bool(state) and not state.startswith(("down", "drain", "fail"))


@live
@pytest.mark.e2e
def test_node_failure_requeues_the_job_which_resumes_and_succeeds(worker, preference_snapshot):
    """The node goes DOWN mid-run (what slurmctld does when a node stops answering): Slurm
    kills the job and requeues it (``--requeue``); once the node is back, the job starts
    again (after ``cred_expire``: 10 s on the test cluster) and training resumes from the
    newest checkpoint to success."""
    config = {**FAST, "max_steps": 40, "save_steps": 4}
    run = services.launch_run(kind="reward", queue="slurm", snapshot=preference_snapshot,
                              config=config)  # fmt: skip
    _running(run, 5, worker)
    run.refresh_from_db()
    down = ["scontrol", "update", "NodeName=localhost"]
    try:
        subprocess.run([*down, "State=DOWN", "Reason=test-node-failure"], check=True)
        wait_for(lambda: slurm.job_info(run.slurm_job_id)["Restarts"] == "1", timeout=60)
    finally:  # ReturnToService may have brought the node back already: then RESUME is refused
        subprocess.run([*down, "State=RESUME"], capture_output=True)
        wait_for(_node_is_up, timeout=60)
    run = finished_run(run, worker)
    assert run.status == "succeeded", f"{run.error}\n{run.log_tail[-3000:]}"
    assert f"Slurm requeued job {run.slurm_job_id} (restart 1)" in run.log_tail
    assert f"Slurm job {run.slurm_job_id} (restart 1)" in run.log_tail  # the job's second start
    assert run.current_step == config["max_steps"] and run.output_model_version is not None
    # resumed from a checkpoint, not from the start: step 1 was reported by the first start only
    assert RunMetric.objects.filter(run=run, name="loss", step=1).count() == 1


@live
def test_a_job_slurm_refuses_fails_the_run_with_sbatch_s_reason(preference_snapshot):
    env = {**SLURM_ENV, "TRAINING_SLURM_PARTITION": "no-such-partition"}
    worker = start_worker(settings.CELERY_BROKER_URL, queues="slurm", extra_env=env)
    try:
        run = services.launch_run(kind="reward", queue="slurm", snapshot=preference_snapshot,
                                  config=FAST)  # fmt: skip
        run = finished_run(run, worker, timeout=120)
    finally:
        stop(worker)
    assert run.status == "failed"
    assert run.error.startswith("SlurmError: sbatch failed:") and "partition" in run.error
    assert run.slurm_job_id == "" and not services.run_root(run).exists()
