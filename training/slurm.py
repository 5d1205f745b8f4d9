"""Train a run as a Slurm job (queues in ``settings.TRAINING_QUEUE_LAUNCHERS``).

The Celery worker that took the run (a CPU worker on a login node) writes a batch script, submits
it with ``sbatch`` and stays its supervisor: it watches the job with ``scontrol show job`` (no
accounting database needed), relays rank 0's progress file through the run's hooks
(``training.relay``, as for a local ``torchrun``) and cancels with ``scancel``. Each task of the
job (one per node) runs ``torchrun --nnodes $SLURM_NTASKS --rdzv-backend c10d`` over
``training.trainers.launch``; the run's directory must be on a filesystem every node shares.

Failures: a node that fails (or a preemption) makes Slurm requeue the job (``--requeue``), and
the next start resumes from the newest checkpoint in the run's work directory. A task that dies
(a killed torchrun, an OOM kill) ends the whole job (``srun --kill-on-bad-exit``): the run fails
with the job's state, exit code and the end of its log.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from training import services, trainers
from training.models import TrainingRun
from training.relay import relay

#: Job states after which the job runs again or is still to end.
ACTIVE = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
     "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED"}
)  # fmt: skip
#: Ends after which Slurm requeues a job submitted with ``--requeue``.
REQUEUED_AFTER = frozenset({"NODE_FAIL", "PREEMPTED"})
REQUEUE_WAIT_SECONDS = 60
HEARTBEAT_SECONDS = 30
LOG_LINES_IN_ERROR = 40


class SlurmError(RuntimeError):
    """A Slurm command failed, or the job ended without a result."""


def batch_script(run: TrainingRun, spec: Path, log_file: Path) -> str:
    """The ``sbatch`` script of ``run``: options from ``settings.TRAINING_SLURM_*``, then one
    ``torchrun`` agent per task, meeting at a c10d rendezvous on the job's first node."""
    options = [
        f"--job-name=run-{run.pk}",
        f"--nodes={settings.TRAINING_SLURM_NODES}",
        f"--ntasks-per-node={settings.TRAINING_SLURM_TASKS_PER_NODE}",
        f"--cpus-per-task={settings.TRAINING_SLURM_CPUS_PER_TASK}",
        "--requeue",
        "--open-mode=append",  # a requeued job's log continues the first one's
        f"--output={log_file}",
        f"--chdir={settings.BASE_DIR}",
    ]
    if settings.TRAINING_SLURM_GPUS_PER_NODE > 0:
        options.append(f"--gres=gpu:{settings.TRAINING_SLURM_GPUS_PER_NODE}")
    if settings.TRAINING_SLURM_PARTITION:
        options.append(f"--partition={settings.TRAINING_SLURM_PARTITION}")
    if settings.TRAINING_SLURM_TIME_LIMIT:
        options.append(f"--time={settings.TRAINING_SLURM_TIME_LIMIT}")
    options += shlex.split(settings.TRAINING_SLURM_EXTRA_ARGS)
    torchrun = shlex.join(
        [settings.TRAINING_SLURM_PYTHON, "-m", "torch.distributed.run",
         f"--nproc_per_node={run.num_processes}", "--rdzv-backend=c10d"]
    )  # fmt: skip
    launch = shlex.join(["-m", "training.trainers.launch", "--spec", str(spec)])
    return "\n".join(
        [
            "#!/bin/bash",
            *(f"#SBATCH {shlex.quote(option)}" for option in options),
            "set -euo pipefail",
            'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            f"port=$(({settings.TRAINING_SLURM_RDZV_PORT} + SLURM_JOB_ID % 1000))",
            'echo "Slurm job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on'
            ' $SLURM_JOB_NODELIST: $SLURM_NTASKS tasks, rendezvous $head:$port"',
            f"srun --kill-on-bad-exit=1 {torchrun} --nnodes=$SLURM_NTASKS"
            f' --rdzv-endpoint="$head:$port" --rdzv-id="$SLURM_JOB_ID" {launch}',
            "",
        ]
    )


def _slurm(*command: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"CUDA_VISIBLE_DEVICES", "GPU_DEVICE"}}
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    except FileNotFoundError as exc:
        raise SlurmError(
            f"{command[0]} not found: a Slurm queue's worker must run where Slurm's commands are"
        ) from exc


def submit(script: Path) -> str:
    """``sbatch`` the script; the job id."""
    done = _slurm("sbatch", "--parsable", str(script))
    if done.returncode != 0:
        raise SlurmError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]


def job_info(job_id: str) -> dict[str, str] | None:
    """``JobState``, ``ExitCode``, ``Reason``, ``Restarts``… of the job; None once Slurm has
    forgotten it (``MinJobAge`` after its end). Raises SlurmError when Slurm does not answer."""
    done = _slurm("scontrol", "show", "job", "--oneliner", job_id)
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return None
        raise SlurmError(f"scontrol show job {job_id}: {done.stderr.strip()}")
    return dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", done.stdout))


def cancel(job_id: str) -> None:
    done = _slurm("scancel", job_id)
    if done.returncode != 0:
        raise SlurmError(f"scancel {job_id}: {done.stderr.strip()}")


class _Watch:
    """``finished()`` for :func:`relay`: polls the job, logs requeues, keeps the heartbeat."""

    def __init__(self, run_id: int, job_id: str, log_line: Callable[[str], None]) -> None:
        self.run_id, self.job_id, self.log_line = run_id, job_id, log_line
        self.info: dict[str, str] | None = {}
        self.restarts, self.requeue_seen, self.beat = "0", 0.0, 0.0
        self.cancelled = False

    def cancel(self) -> None:
        self.log_line(f"cancel requested: scancel {self.job_id}")
        cancel(self.job_id)
        self.cancelled = True

    def finished(self) -> bool:
        try:
            self.info = job_info(self.job_id)
        except SlurmError as exc:  # the controller is busy or restarting: ask again later
            self.log_line(str(exc))
            return False
        now = time.monotonic()
        if now - self.beat > HEARTBEAT_SECONDS:
            services.heartbeat(run_id=self.run_id)
            self.beat = now
        if self.info is None:
            return True
        state = self.info.get("JobState", "")
        if self.info.get("Restarts", "0") != self.restarts:
            self.restarts = self.info.get("Restarts", "0")
            self.log_line(
                f"Slurm requeued job {self.job_id} (restart {self.restarts}): it resumes from"
                " the newest checkpoint"
            )
        if state in REQUEUED_AFTER and self.info.get("Requeue") == "1" and not self.cancelled:
            self.requeue_seen = self.requeue_seen or now
            return now - self.requeue_seen > REQUEUE_WAIT_SECONDS
        self.requeue_seen = 0.0
        return state not in ACTIVE

    def describe(self) -> str:
        if not self.info:
            return f"Slurm job {self.job_id} ended (Slurm no longer knows it) without a result"
        return (
            f"Slurm job {self.job_id} ended {self.info.get('JobState')} without a result"
            f" (exit code {self.info.get('ExitCode')}, reason {self.info.get('Reason')})"
        )


def supervise(
    run: TrainingRun,
    spec: Path,
    files: dict[str, Path],
    hooks: trainers.Hooks,
    log_line: Callable[[str], None],
) -> trainers.TrainingResult | None:
    """Submit ``run`` (its launch ``spec`` written) and watch its job to the end.

    None when rank 0 wrote the result file (the caller reads it); a cancelled result when the
    job was cancelled before; raises SlurmError when the job ended any other way."""
    if run.slurm_job_id:  # an earlier attempt's job (its worker died): never two at once
        earlier = job_info(run.slurm_job_id)
        if earlier and earlier.get("JobState") in ACTIVE:
            log_line(f"cancelling Slurm job {run.slurm_job_id} of an earlier attempt")
            cancel(run.slurm_job_id)
    log_file = spec.parent / "slurm.log"
    log_file.unlink(missing_ok=True)
    script = spec.parent / "job.sbatch"
    script.write_text(batch_script(run, spec, log_file))
    job_id = submit(script)
    services.record_slurm_job(run_id=run.pk, job_id=job_id)
    log_line(f"submitted Slurm job {job_id}")
    watch = _Watch(run.pk, job_id, log_line)
    last_step = relay(
        progress_file=files["progress.jsonl"],
        log_file=log_file,
        hooks=hooks,
        log_line=log_line,
        finished=watch.finished,
        cancel=watch.cancel,
        interval=settings.TRAINING_SLURM_POLL_SECONDS,
    )
    if files["result.json"].exists():
        outcome = json.loads(files["result.json"].read_text())
        log_line(
            f"Slurm job {job_id}: {outcome['status']}, world size"
            f" {outcome.get('metrics', {}).get('world_size', '?')}"
        )
        if watch.info and watch.info.get("JobState") != "COMPLETED":  # e.g. an agent's exit
            log_line(f"{watch.describe().replace('without', 'after')}: the result stands")
        return None
    if watch.cancelled:
        return trainers.TrainingResult(metrics={}, global_step=last_step, cancelled=True)
    log = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    raise SlurmError("\n".join([watch.describe(), *log[-LOG_LINES_IN_ERROR:]]))
