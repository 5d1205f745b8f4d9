"""Work repeated every few seconds on a daemon thread of a long-lived process (a Celery worker's
main process): each pass ends by closing the database connections it used, and a failing pass
(a database hiccup) is logged instead of ending the thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections

log = logging.getLogger(__name__)


def every(
    seconds: float, work: Callable[[], object], *, name: str, stop: threading.Event
) -> threading.Thread:
    """Start a daemon thread named ``name`` that calls ``work()`` every ``seconds`` until
    ``stop`` is set."""

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                work()
            except Exception:
                log.exception("%s: a pass failed", name)
            finally:
                close_old_connections()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
