"""Execute one claimed run inside a Celery worker process: in-process for one device, or as a
supervised ``torchrun`` subprocess for several. Progress, metrics, cancellation and the log
tail flow to the database; any exception leaves the run ``failed`` with its traceback."""

from __future__ import annotations

import ctypes
import json
import logging
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path

from django.conf import settings

from training import services, trainers
from training.datasets import training_data
from training.generation import profile_version_safely
from training.models import TrainingRun

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
        tail.add(f"attempt {run.attempts} on {run.worker}")
        output_dir, work_dir = services.run_dirs(run)
        data = training_data(run)
        if run.num_processes > 1:
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


def _terminate_with_parent() -> None:
    """In the forked ``torchrun``: SIGTERM it when this supervising process dies (an OOM kill),
    so a re-queued attempt never trains beside an orphan (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _supervise_torchrun(
    run: TrainingRun, data: dict, output_dir: Path, work_dir: Path, tail: LogTail
) -> trainers.TrainingResult:
    """Spawn ``torchrun`` over ``training.trainers.launch``; relay rank 0's progress file to the
    database, turn a cancel request into the cancel file, and read the result file."""
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
    log_file = spec_dir / "torchrun.log"
    with log_file.open("w") as sink:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_terminate_with_parent,
        )
    hooks, reports_seen, log_offset = _db_hooks(run.pk, tail), 0, 0
    while True:
        finished = process.poll() is not None
        with log_file.open() as handle:
            handle.seek(log_offset)
            for line in handle.read().splitlines():
                tail.add(line)
            log_offset = handle.tell()
        if files["progress.jsonl"].exists():
            reports = files["progress.jsonl"].read_text().splitlines()
            complete = reports if finished else reports[:-1]  # the last line may be partial
            for line in complete[reports_seen:]:
                report = json.loads(line)
                hooks.on_metrics(report["step"], report["max_steps"], report["logs"])
            reports_seen = max(reports_seen, len(complete))
        if hooks.should_cancel() and not files["cancel"].exists():
            files["cancel"].touch()
        if finished:
            break
        time.sleep(0.5)
    output = tail.text
    if not files["result.json"].exists():
        raise RuntimeError(f"torchrun exited with {process.returncode}:\n{output}")
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
