"""Relay a run that trains in other processes (``torchrun`` here, or a Slurm job) to its hooks.

``training.trainers.launch`` on rank 0 appends one JSON line per metrics report to the progress
file; :func:`relay` turns them into ``hooks.on_metrics`` calls, copies new log lines, and calls
``cancel`` once when ``hooks.should_cancel()`` turns true, until ``finished()``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from training import trainers


def relay(
    *,
    progress_file: Path,
    log_file: Path,
    hooks: trainers.Hooks,
    log_line: Callable[[str], None],
    finished: Callable[[], bool],
    cancel: Callable[[], None],
    interval: float = 0.5,
) -> int:
    """Poll until ``finished()``; return the last step reported (0 when none was)."""
    reports_seen, log_offset, cancelled, last_step = 0, 0, False, 0
    while True:
        done = finished()
        if log_file.exists():
            with log_file.open(errors="replace") as handle:
                handle.seek(log_offset)
                for line in handle.read().splitlines():
                    log_line(line)
                log_offset = handle.tell()
        if progress_file.exists():
            reports = progress_file.read_text().splitlines()
            complete = reports if done else reports[:-1]  # the last line may be partial
            for line in complete[reports_seen:]:
                report = json.loads(line)
                hooks.on_metrics(report["step"], report["max_steps"], report["logs"])
                last_step = report["step"]
            reports_seen = max(reports_seen, len(complete))
        if not cancelled and hooks.should_cancel():
            cancel()
            cancelled = True
        if done:
            return last_step
        time.sleep(interval)
