"""Execute one claimed run inside a Celery worker process: in-process for one device, or as a
supervised ``torchrun`` subprocess for several. Progress, metrics, cancellation and the log
tail flow to the database; any exception leaves the run ``failed`` with its traceback."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import traceback
from collections import deque
from pathlib import Path

from django.conf import settings

from training import services, slurm, trainers
from training.datasets import training_data
from training.generation import profile_version_safely
from training.models import TrainingRun
from training.relay import relay

log = logging.getLogger(__name__)


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
        log.info("run %s is not queued any more; nothing to do", run_id)
        return
    tail = LogTail()
    root = logging.getLogger()
    root.addHandler(tail)
    try:
        tail.add(f"attempt {run.attempts} on {run.worker}")
        output_dir, work_dir = services.run_dirs(run)
        data = training_data(run)
        if run.num_processes > 1 or settings.TRAINING_QUEUE_LAUNCHERS.get(run.queue) == "slurm":
            result = _supervise_torchrun(run, data, output_dir, work_dir, tail)
        else:
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


def _supervise_torchrun(
    run: TrainingRun, data: dict, output_dir: Path, work_dir: Path, tail: LogTail
) -> trainers.TrainingResult:
    """Spawn ``torchrun`` over ``training.trainers.launch`` (or submit it as a Slurm job when the
    run's queue launches with Slurm: ``training.slurm``); relay rank 0's progress file to the
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
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={run.num_processes}",
        "-m",
        "training.trainers.launch",
        "--spec",
        str(spec),
    ]
    hooks = _db_hooks(run.pk, tail)
    if settings.TRAINING_QUEUE_LAUNCHERS.get(run.queue) == "slurm":
        ended = slurm.supervise(run, spec, files, hooks, tail.add)
        if ended is not None:  # cancelled before rank 0 wrote a result
            return ended
    else:
        log_file = spec_dir / "torchrun.log"
        with log_file.open("w") as sink:
            process = subprocess.Popen(
                command, cwd=settings.BASE_DIR, stdout=sink, stderr=subprocess.STDOUT
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
