"""A worker's watchdog: a daemon thread in the Celery worker's main process that, every
``TRAINING_WATCH_SECONDS``, re-queues or fails runs whose training process died while the
worker lives (a child SIGKILLed by the OOM killer) and refreshes the heartbeat of the runs
its host's live processes hold (``services.requeue_orphaned_runs``,
``services.refresh_live_holders``). It runs wherever a worker runs: ``scripts/demo``'s
embedded worker and every compose worker alike, with no beat scheduler to deploy."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from common import periodic
from training import services

log = logging.getLogger(__name__)
_started = threading.Event()


def check_once() -> list[int]:
    """One pass: refresh live holders, then re-queue (or fail) runs whose holder is gone."""
    close_old_connections()
    try:
        services.refresh_live_holders()
        return services.requeue_orphaned_runs()
    finally:
        close_old_connections()


def _watch() -> None:
    requeued = check_once()
    if requeued:
        log.warning("re-queued runs whose training process died: %s", requeued)


def start(stop: threading.Event | None = None) -> threading.Thread | None:
    """Start the watchdog once per process (None when ``TRAINING_WATCH_SECONDS`` is 0)."""
    interval = settings.TRAINING_WATCH_SECONDS
    if interval <= 0 or _started.is_set():
        return None
    _started.set()
    return periodic.every(interval, _watch, name="run-watchdog", stop=stop or threading.Event())
