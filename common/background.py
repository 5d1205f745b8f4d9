"""Queueing Celery tasks by name, so that a service never imports the task module that imports
it (tasks → services is the only direction)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import current_app
from celery.result import AsyncResult
from django.conf import settings
from kombu.exceptions import OperationalError

from common.errors import DomainError

logger = logging.getLogger(__name__)


class _Outage:
    """Until when silent sends skip the broker (monotonic time), in this process."""

    until = 0.0


def send(
    name: str, *args: object, fail_silently: bool = False, **options: object
) -> AsyncResult | None:
    """Queue the task registered as ``name`` with ``args`` (``options`` as for ``apply_async``:
    ``countdown``, ``queue`` …). With ``fail_silently`` a broker outage is logged and ``None``
    returned, so that the request that asked neither fails nor waits: one attempt (no publish
    retries), and for ``BROKER_RETRY_AFTER_S`` after the broker could not be reached the next
    silent sends of this process skip it at once."""
    if fail_silently:
        if time.monotonic() < _Outage.until:
            logger.warning("broker unreachable: %s%r not queued", name, args)
            return None
        options.setdefault("retry", False)
    try:
        return current_app.send_task(name, args=args, **options)
    except Exception as exc:
        if not fail_silently:
            raise
        if isinstance(exc, OperationalError):  # unreachable (kombu's connection error)
            _Outage.until = time.monotonic() + settings.BROKER_RETRY_AFTER_S
        logger.exception("could not queue %s%r", name, args)
        return None


class QueueUnavailable(DomainError):
    """The broker did not take a job that a request asked for (the API answers 503)."""

    http_status = 503


def short_retry_policy() -> dict:
    """A publish retry policy for jobs a person is waiting on: ``LAUNCH_PUBLISH_RETRIES`` tries
    ``LAUNCH_PUBLISH_RETRY_INTERVAL`` seconds apart, so a broker that is down fails the request
    in about a second instead of hanging it."""
    interval = settings.LAUNCH_PUBLISH_RETRY_INTERVAL
    return {
        "max_retries": settings.LAUNCH_PUBLISH_RETRIES,
        "interval_start": 0,
        "interval_step": interval,
        "interval_max": interval,
    }


def send_or_fail(
    name: str, *args: object, what: str, fail: Callable[[str], None], **options: object
) -> AsyncResult:
    """Queue a job a person is waiting on (a run, an import, a snapshot …), retrying briefly
    (``short_retry_policy``); a broker still unreachable calls ``fail(message)`` so the job is
    recorded as failed with the reason, never left queued in silence, and raises
    QueueUnavailable (503)."""
    try:
        return send(name, *args, retry=True, retry_policy=short_retry_policy(), **options)
    except Exception as exc:
        message = (
            f"could not queue {what}: the task broker is unreachable "
            f"({type(exc).__name__}: {exc}); try again when the broker is back"
        )
        fail(message)
        raise QueueUnavailable(message) from exc
