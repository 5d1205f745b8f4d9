"""Cached quality & discretion metrics: request a debounced refresh, recompute, read.

Payloads live in ``MetricsReport`` rows (one per project × kind × parameters). Every writer of
judgments (workspace, API, imports, edits, flags, model profiling) publishes an event on the
post-commit bus (``common.events``); ``refresh_after_judgments``, subscribed to those events,
requests the refresh.

Debounce: a request marks the project's reports due at ``now + delay`` unless they are already
due earlier, and queues the Celery task ``annotation.refresh_metrics`` only when it changed
something — so a burst of submissions costs one recompute per ``METRICS_REFRESH_DEBOUNCE_S``
(default 30 s), always *after* the newest request. The task claims due reports (clearing
``refresh_due_at`` first, so requests arriving while it computes schedule another run) and
recomputes them from the database through ``inputs`` and ``payloads``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from annotation.models import MetricsReport, Project
from annotation.quality import inputs, payloads
from common import background
from common.errors import DomainError

logger = logging.getLogger(__name__)
DEFAULT_BOOTSTRAP = 200
KINDS = tuple(MetricsReport.Kind.values)


# A refresh still due this long after its time never ran: its task was not queued (the broker
# was down) or was lost. The next request schedules it again, as if none were due.
OVERDUE_S = 120


def debounce_seconds() -> float:
    return float(getattr(settings, "METRICS_REFRESH_DEBOUNCE_S", 30))


# ---------------------------------------------------------------- parameters


def normalize_params(kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canonical parameters of a report kind (unknown keys refused)."""
    params = dict(params or {})
    if kind == MetricsReport.Kind.QUALITY:
        scope = params.pop("scope", "humans")
        if scope not in ("humans", "all"):
            raise DomainError("scope must be 'humans' or 'all'")
        out: dict[str, Any] = {"scope": scope}
    elif kind == MetricsReport.Kind.DISCRETION:
        reference = params.pop("reference", None) or None
        bootstrap = params.pop("bootstrap", DEFAULT_BOOTSTRAP)
        try:
            bootstrap = int(bootstrap)
        except (TypeError, ValueError):
            raise DomainError("bootstrap must be an integer") from None
        if not 0 <= bootstrap <= 100_000:
            raise DomainError("bootstrap must be between 0 and 100000")
        out = {"reference": reference, "bootstrap": bootstrap}
    else:
        raise DomainError(f"unknown metrics kind {kind!r}")
    if params:
        raise DomainError(f"unknown parameters: {', '.join(sorted(params))}")
    return out


def params_hash(kind: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"kind": kind, **params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------- computing


def compute_payload(project: Project, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Compute one report now (no caching)."""

    params = normalize_params(kind, params)
    if kind == MetricsReport.Kind.QUALITY:
        return payloads.quality_payload(project, scope=params["scope"])
    reference = params["reference"]
    if reference is not None and not inputs.User.objects.filter(username=reference).exists():
        raise DomainError(f"no annotator called {reference!r}")
    return payloads.discretion_payload(
        project, reference=reference, bootstrap=params["bootstrap"], seed=0
    )


def _store(report: MetricsReport, payload: dict | None, error: str, started: float) -> None:
    fields = {"error": error[:5000], "compute_ms": int((time.perf_counter() - started) * 1000)}
    if payload is not None:
        fields.update(payload=payload, computed_at=timezone.now())
    MetricsReport.objects.filter(pk=report.pk).update(**fields)
    for name, value in fields.items():
        setattr(report, name, value)


def compute_report(report: MetricsReport) -> MetricsReport:
    """Recompute ``report`` and store the payload (or the error, keeping the old payload)."""
    started = time.perf_counter()
    try:
        payload = compute_payload(report.project, report.kind, report.params)
    except Exception as exc:  # a failing metric must not kill the worker or hide old results
        logger.exception("metrics report %s failed", report.pk)
        _store(report, None, f"{type(exc).__name__}: {exc}", started)
        return report
    _store(report, payload, "", started)
    return report


def compute_and_store(project: Project, kind: str, params: dict[str, Any]) -> MetricsReport:
    """Compute synchronously (management commands, tests) and cache the result."""
    params = normalize_params(kind, params)
    report, _ = MetricsReport.objects.get_or_create(
        project=project,
        kind=kind,
        params_hash=params_hash(kind, params),
        defaults={"params": params},
    )
    started = time.perf_counter()
    payload = compute_payload(project, kind, params)  # errors propagate to the caller
    MetricsReport.objects.filter(pk=report.pk, refresh_due_at__lte=timezone.now()).update(
        refresh_due_at=None
    )
    _store(report, payload, "", started)
    return report


# ---------------------------------------------------------------- reading


def get_report(project: Project, kind: str, params: dict[str, Any] | None = None) -> MetricsReport:
    """The cached report for these parameters; a missing one is created and queued now."""
    params = normalize_params(kind, params)
    report, created = MetricsReport.objects.get_or_create(
        project=project,
        kind=kind,
        params_hash=params_hash(kind, params),
        defaults={"params": params, "refresh_due_at": timezone.now()},
    )
    if created:
        _forget_due(project.pk)
        transaction.on_commit(partial(_enqueue, project.pk, 0.0))
    return report


def is_pending(report: MetricsReport) -> bool:
    return report.refresh_due_at is not None or (report.payload is None and not report.error)


# ---------------------------------------------------------------- refreshing


def _enqueue(project_id: int, countdown: float) -> None:
    background.send(
        "annotation.refresh_metrics", project_id, countdown=max(countdown, 0.0), fail_silently=True
    )


def _default_reports(project_id: int, due) -> list[MetricsReport]:
    rows = []
    for kind in KINDS:
        params = normalize_params(kind)
        rows.append(
            MetricsReport(
                project_id=project_id,
                kind=kind,
                params=params,
                params_hash=params_hash(kind, params),
                refresh_due_at=due,
            )
        )
    return rows


def request_metrics_refresh(project_id: int, *, delay: float | None = None) -> bool:
    """Ask for the project's metrics to be recomputed within ``delay`` seconds (default: the
    debounce window). Cheap (one UPDATE); queues the Celery task on commit only when no
    refresh was already due by then (one overdue by ``OVERDUE_S`` counts as none). Returns
    whether a task was queued."""
    delay = debounce_seconds() if delay is None else max(float(delay), 0.0)
    _forget_due(project_id)
    due = timezone.now() + timedelta(seconds=delay)
    overdue = timezone.now() - timedelta(seconds=OVERDUE_S)
    marked = MetricsReport.objects.filter(
        Q(refresh_due_at__isnull=True) | Q(refresh_due_at__gt=due) | Q(refresh_due_at__lt=overdue),
        project_id=project_id,
    ).update(refresh_due_at=due)
    if not marked:
        if MetricsReport.objects.filter(project_id=project_id).exists():
            return False  # a refresh is already due no later than this one
        if not Project.objects.filter(pk=project_id).exists():
            return False
        MetricsReport.objects.bulk_create(_default_reports(project_id, due), ignore_conflicts=True)
    transaction.on_commit(partial(_enqueue, project_id, delay))
    return True


# Events whose writes change what the reports count (``common.events``).
JUDGMENT_EVENTS = (
    "judgment.created",
    "judgment.updated",
    "judgment.flagged",
    "judgments.imported",
)


# When the cache is shared by every process (``SHARED_CACHE``), it holds each project's earliest
# due refresh: a judgment written more than ``COVERED_MARGIN_S`` before it is counted by that
# refresh, so the handler skips the database for it (a burst of submissions then costs one cache
# read each). Whatever sets, moves or claims a due refresh drops the entry first. The margin
# exceeds how early the task may claim a due report (``refresh_due_reports``' slack).
COVERED_MARGIN_S = 2.0


def _due_key(project_id: int) -> str:
    return f"metrics:earliest-due:{project_id}"


def _forget_due(project_id: int) -> None:
    if settings.SHARED_CACHE:
        cache.delete(_due_key(project_id))


def refresh_after_judgments(event: str, payload: dict) -> None:
    """Event-bus handler: a debounced refresh of the judged project's reports."""
    project_id = payload["project_id"]
    if not settings.SHARED_CACHE:
        request_metrics_refresh(project_id)
        return
    covered_until = cache.get(_due_key(project_id))
    if covered_until is not None and time.time() < covered_until:
        return
    request_metrics_refresh(project_id)
    earliest = MetricsReport.objects.filter(
        project_id=project_id, refresh_due_at__isnull=False
    ).aggregate(due=Min("refresh_due_at"))["due"]
    if earliest is not None:
        until = earliest.timestamp() - COVERED_MARGIN_S
        if until > time.time():
            cache.set(_due_key(project_id), until, timeout=until - time.time())


def refresh_due_reports(project_id: int) -> dict[str, Any]:
    """Body of the Celery task: recompute the project's reports that are due; re-queue itself
    for reports due later. Returns counts."""
    now = timezone.now()
    slack = timedelta(seconds=1)
    pending = list(
        MetricsReport.objects.filter(
            project_id=project_id, refresh_due_at__isnull=False
        ).values_list("id", "refresh_due_at")
    )
    ready = [pk for pk, due in pending if due <= now + slack]
    if ready:
        _forget_due(project_id)
    later = [due for _, due in pending if due > now + slack]
    refreshed = failed = 0
    for pk in ready:
        claimed = MetricsReport.objects.filter(pk=pk, refresh_due_at__lte=now + slack).update(
            refresh_due_at=None
        )
        if not claimed:
            continue
        report = MetricsReport.objects.select_related("project").get(pk=pk)
        compute_report(report)
        if report.error:
            failed += 1
        else:
            refreshed += 1
    if later:
        transaction.on_commit(
            partial(_enqueue, project_id, (min(later) - timezone.now()).total_seconds())
        )
    return {"refreshed": refreshed, "failed": failed, "deferred": len(later)}
