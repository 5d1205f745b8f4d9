"""Execute one claimed run inside a Celery worker process: in-process for one device, or as a
supervised ``torchrun`` subprocess for several. Progress, metrics, cancellation and the log
tail flow to the database; any exception leaves the run ``failed`` with its traceback."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections import deque
from pathlib import Path

from django.conf import settings

from training import services, slurm, strategies, trainers
from training.datasets import training_data
from training.generation import profile_version_safely
from training.models import TrainingRun
from training.relay import relay

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2)


class LogTail(logging.Handler):
    """Keeps the last lines logged while a run trains (shown on the run page)."""

    def __init__(self, lines: int = 300) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def add(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _db_hooks(run_id: int, tail: LogTail) -> trainers.Hooks:
    def on_metrics(step: int, max_steps: int, logs: dict) -> None:
        tail.add(
            f"step {step}/{max_steps} "
            + " ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, int | float))
        )
        services.record_progress(
            run_id=run_id, step=step, max_steps=max_steps, logs=logs, log_tail=tail.text
        )

    return trainers.Hooks(
        on_metrics=on_metrics, should_cancel=lambda: services.cancel_requested(run_id=run_id)
    )


def execute(run_id: int) -> None:
    """Claim ``run_id`` and train it to completion, cancellation or failure."""
    run = services.claim_run(run_id=run_id, worker=services.worker_identity())
    if run is None:
        log.info("run %s is finished, cancelled or held by a live process; nothing to do", run_id)
        return
    tail = LogTail()
    root = logging.getLogger()
    root.addHandler(tail)
    try:
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        tail.add(f"attempt {run.attempts} on {run.worker}; CUDA_VISIBLE_DEVICES={devices or ''}")
        output_dir, work_dir = services.run_dirs(run)
        data = training_data(run)
        config = trainers.from_dict(run.kind, run.config, world_size=run.num_processes)
        on_slurm = settings.TRAINING_QUEUE_LAUNCHERS.get(run.queue) == "slurm"
        if on_slurm or strategies.uses_launcher(config.strategy, run.num_processes):
            result = _supervise_launch(run, config, data, output_dir, work_dir, tail, on_slurm)
        else:
            _record_launch(run, config, [], work_dir.parent / "launch")
            result = trainers.run_training(
                run.kind, run.config, data, output_dir, _db_hooks(run.pk, tail), work_dir=work_dir
            )
        finished = services.finish_run(run_id=run.pk, result=result, log_tail=tail.text)
        if finished.output_model_version_id:  # the model's own discretion (never raises)
            profile_version_safely(finished.output_model_version_id)
    except Exception as exc:
        trace = traceback.format_exc()
        tail.add(trace)
        services.fail_run(
            run_id=run.pk, error=services.failure_text(exc, trace), log_tail=tail.text
        )
    finally:
        root.removeHandler(tail)


def torchrun_command(num_processes: int, spec: Path) -> list[str]:
    """torchrun over ``training.trainers.launch`` on this machine (every strategy: transformers
    reads FSDP / DeepSpeed from the run's training arguments)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={num_processes}",
        "-m",
        "training.trainers.launch",
        "--spec",
        str(spec),
    ]


def _record_launch(
    run: TrainingRun, config: trainers.RunConfig, command: list[str], spec_dir: Path
) -> None:
    """Write the run's launch configuration into its launch directory (with the DeepSpeed JSON
    and the accelerate config file it amounts to) and store it on the run."""
    checkpointing = config.activation_checkpointing
    if checkpointing is None:  # auto: on for GPUs (the trainer resolves it on the device)
        checkpointing = run.queue == TrainingRun.Queue.GPU
    launch = strategies.launch_config(
        config, run.num_processes, command, activation_checkpointing=checkpointing
    )
    launch["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "launch_config.json").write_text(json.dumps(launch, indent=2))
    (spec_dir / "accelerate_config.json").write_text(json.dumps(launch["accelerate"], indent=2))
    if "deepspeed" in launch["training_arguments"]:
        deepspeed = launch["training_arguments"]["deepspeed"]
        (spec_dir / "deepspeed.json").write_text(json.dumps(deepspeed, indent=2))
    services.record_launch_config(run_id=run.pk, launch_config=launch)


def _terminate_with_parent() -> None:
    """In the forked ``torchrun``: SIGTERM it when this supervising process dies (an OOM kill),
    so a re-queued attempt never trains beside an orphan (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _supervise_launch(
    run: TrainingRun,
    config: trainers.RunConfig,
    data: dict,
    output_dir: Path,
    work_dir: Path,
    tail: LogTail,
    on_slurm: bool,
) -> trainers.TrainingResult:
    """Spawn ``torchrun`` over ``training.trainers.launch`` (or, ``on_slurm``, submit it as a
    Slurm job: ``training.slurm``); relay rank 0's progress file to the
    database, turn a cancel request into the cancel file (``scancel``), and read the result file."""
    spec_dir = work_dir.parent / "launch"
    spec_dir.mkdir(parents=True, exist_ok=True)
    files = {
        name: spec_dir / name for name in ("data.json", "progress.jsonl", "cancel", "result.json")
    }
    files["data.json"].write_text(json.dumps(data))
    for name in ("progress.jsonl", "cancel", "result.json"):
        files[name].unlink(missing_ok=True)
    spec = spec_dir / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "kind": run.kind,
                "config": run.config,
                "data_file": str(files["data.json"]),
                "output_dir": str(output_dir),
                "work_dir": str(work_dir),
                "progress_file": str(files["progress.jsonl"]),
                "cancel_file": str(files["cancel"]),
                "result_file": str(files["result.json"]),
            }
        )
    )
    hooks = _db_hooks(run.pk, tail)
    if on_slurm:
        _record_launch(run, config, ["sbatch", str(spec_dir / "job.sbatch")], spec_dir)
        ended = slurm.supervise(run, spec, files, hooks, tail.add)
        if ended is not None:  # cancelled before rank 0 wrote a result
            return ended
    else:
        command = torchrun_command(run.num_processes, spec)
        _record_launch(run, config, command, spec_dir)
        log_file = spec_dir / "torchrun.log"
        with log_file.open("w") as sink:
            process = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=_terminate_with_parent,
            )
        relay(
            progress_file=files["progress.jsonl"],
            log_file=log_file,
            hooks=hooks,
            log_line=tail.add,
            finished=lambda: process.poll() is not None,
            cancel=files["cancel"].touch,
        )
        if not files["result.json"].exists():
            raise RuntimeError(f"torchrun exited with {process.returncode}:\n{tail.text}")
    output = tail.text
    outcome = json.loads(files["result.json"].read_text())
    if outcome["status"] == "failed":
        raise RuntimeError(outcome.get("error") or output)
    return trainers.TrainingResult(
        metrics=outcome.get("metrics", {}),
        artifact_path=Path(outcome["artifact_path"]) if outcome.get("artifact_path") else None,
        sha256=outcome.get("sha256"),
        size_bytes=outcome.get("size_bytes"),
        eval=outcome.get("eval", {}),
        global_step=outcome.get("global_step", 0),
        cancelled=outcome["status"] == "cancelled",
    )
