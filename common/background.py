"""Queueing Celery tasks by name, so that a service never imports the task module that imports
it (tasks → services is the only direction)."""

from __future__ import annotations

import logging

from celery import current_app
from celery.result import AsyncResult

logger = logging.getLogger(__name__)


def send(
    name: str, *args: object, fail_silently: bool = False, **options: object
) -> AsyncResult | None:
    """Queue the task registered as ``name`` with ``args`` (``options`` as for ``apply_async``:
    ``countdown``, ``queue`` …). With ``fail_silently`` a broker outage is logged and ``None``
    returned, so that the request that asked does not fail."""
    try:
        return current_app.send_task(name, args=args, **options)
    except Exception:
        if not fail_silently:
            raise
        logger.exception("could not queue %s%r", name, args)
        return None
