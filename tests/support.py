"""Helpers for tests that start real processes against the test database."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.db import connection

REPO = Path(__file__).resolve().parents[1]


def test_database_url() -> str:
    """A DATABASE_URL that points a subprocess at the database this test process uses."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def start_worker(
    broker_url: str,
    queues: str = "cpu",
    extra_env: dict | None = None,
    one_job_per_child=False,
    name: str | None = None,
):
    """A real ``celery worker`` process on ``broker_url`` using the test database, in its own
    session (so ``kill_tree`` can kill it with its children); ``name``: its node name."""
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": broker_url,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": "1",  # tiny models on a shared 2-core machine: one thread is fastest
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues,
               "--concurrency", "1", "--loglevel", "INFO", "--without-heartbeat",
               "--without-gossip", "--without-mingle"]  # fmt: skip
    if one_job_per_child:
        command += ["--max-tasks-per-child", "1"]
    if name:
        command += ["--hostname", name]
    with tempfile.NamedTemporaryFile("w", prefix="worker-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = log.name  # a file, not a pipe: a chatty worker must never block
    return process


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session`` and all its children."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.0f}s")


def stop(process: subprocess.Popen) -> str:
    """Terminate a process (and its session) and return its output, for assertion messages."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout is not None:
        return process.stdout.read()[-20000:]
    path = getattr(process, "log_path", None)
    return Path(path).read_text(errors="replace")[-20000:] if path else ""


def finished_run(run, worker: subprocess.Popen, timeout: float = 240):
    """``run`` (a TrainingRun) reloaded once it has ended: succeeded, failed or cancelled. If it
    does not end in time, the worker is stopped and its output is in the assertion message."""
    from training.models import TrainingRun

    try:
        return wait_for(
            lambda: TrainingRun.objects.filter(
                pk=run.pk, status__in=["succeeded", "failed", "cancelled"]
            ).first(),
            timeout=timeout,
            interval=0.5,
        )
    except Exception as exc:
        raise AssertionError(f"{exc}\n{stop(worker)}") from exc
