"""Command-line entry point, for single processes and ``torchrun``.

    python -m training.trainers.launch --spec spec.json
    torchrun --nproc_per_node 2 -m training.trainers.launch --spec spec.json

``spec.json``: ``{"kind", "config": {...}, "data_file": "data.json", "output_dir",
"work_dir"?, "progress_file"?, "cancel_file"?, "result_file"?}``.

Rank 0 appends one JSON line per metrics report to ``progress_file`` and writes
``result_file`` (``{"status": "succeeded" | "cancelled" | "failed", ...}``). Creating
``cancel_file`` stops the run after the current step (on every rank).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from training.trainers import Hooks, run_training
from training.trainers.common import is_main_process


def file_hooks(progress_file: str | None, cancel_file: str | None) -> Hooks:
    """Hooks that append progress as JSON lines and cancel when ``cancel_file`` exists."""

    def on_metrics(step: int, max_steps: int, logs: dict[str, float]) -> None:
        if progress_file:
            line = {"time": time.time(), "step": step, "max_steps": max_steps, "logs": logs}
            with open(progress_file, "a") as handle:
                handle.write(json.dumps(line) + "\n")

    def should_cancel() -> bool:
        return bool(cancel_file) and Path(cancel_file).exists()

    return Hooks(on_metrics=on_metrics, should_cancel=should_cancel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON run specification")
    spec = json.loads(Path(parser.parse_args(argv).spec).read_text())
    result_file = spec.get("result_file")
    outcome: dict[str, Any]
    try:
        result = run_training(
            spec["kind"],
            spec.get("config", {}),
            json.loads(Path(spec["data_file"]).read_text()),
            spec["output_dir"],
            file_hooks(spec.get("progress_file"), spec.get("cancel_file")),
            work_dir=spec.get("work_dir"),
        )
        status = "cancelled" if result.cancelled else "succeeded"
        outcome = {"status": status, **result.to_dict()}
    except Exception as exc:
        traceback.print_exc()
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    if result_file and is_main_process():
        Path(result_file).write_text(json.dumps(outcome, indent=2, default=str))
    _leave_process_group()
    return 1 if outcome["status"] == "failed" else 0


def _leave_process_group() -> None:
    """Tear the process group down before the interpreter exits: left to exit, gloo's threads
    can abort a rank ("terminate called without an active exception") after a clean run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
