"""Leasing: hand an annotator the next task, skip it, expire stale leases."""

from __future__ import annotations

import random
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.errors import AlreadySubmittedError, CapReachedError, NotYourAssignmentError
from annotation.models import (
    Assignment,
    Judgment,
    Project,
    Task,
    TaskResponse,
)
from annotation.projects.selectors import judgments_counted
from annotation.roles import Membership, require_annotator
from annotation.workspace import pg
from common import events
from common.errors import DomainError

User = get_user_model()

LEASED = Assignment.State.LEASED


SUBMITTED = Assignment.State.SUBMITTED


SKIPPED = Assignment.State.SKIPPED


EXPIRED = Assignment.State.EXPIRED


LEASE_CANDIDATES = 1  # task rows locked per try: each lock writes the row and makes others skip it


LEASE_TRIES = 8


# Random source for gold draws and display order (tests may replace it with a seeded one).
rng = random.Random()


def _live_leases_of_others(annotator: User, now) -> Coalesce:
    live = (
        Assignment.objects.filter(task=OuterRef("pk"), state=LEASED, leased_until__gt=now)
        .exclude(annotator=annotator)
        .order_by()
        .values("task")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(live), 0)


def _blocking_for(annotator: User, now) -> Exists:
    """The annotator already has this task: submitted, skipped or a live lease."""
    return Exists(
        Assignment.objects.filter(task=OuterRef("pk"), annotator=annotator).filter(
            Q(state__in=[SUBMITTED, SKIPPED]) | Q(state=LEASED, leased_until__gt=now)
        )
    )


def _open_tasks(annotator: User, project: Project, *, gold: bool, now):
    """Tasks this annotator may lease now, best first (least-annotated, then oldest)."""
    tasks = (
        Task.objects.filter(project=project, is_gold=gold)
        .exclude(_blocking_for(annotator, now))
        .exclude(Exists(Judgment.objects.filter(task=OuterRef("pk"), annotator=annotator)))
        .exclude(
            Exists(TaskResponse.objects.filter(task=OuterRef("pk"), response__author=annotator))
        )
    )
    if gold:
        return tasks.order_by("id")
    overlap = project.annotations_per_task
    return (
        tasks.filter(submitted_count__lt=overlap)
        .alias(live=_live_leases_of_others(annotator, now))
        .filter(live__lt=overlap - F("submitted_count"))
        .order_by("submitted_count", "id")
    )


def _lease_from_pool(annotator: User, project: Project, *, gold: bool, now) -> Assignment | None:
    rejected: list[int] = []
    for _ in range(LEASE_TRIES):
        candidates = _open_tasks(annotator, project, gold=gold, now=now)
        if rejected:
            candidates = candidates.exclude(pk__in=rejected)
        ids = list(
            candidates.select_for_update(skip_locked=True, no_key=True, of=("self",)).values_list(
                "pk", flat=True
            )[:LEASE_CANDIDATES]
        )
        if not ids:
            # Nothing free: either nothing is open, or what is open is locked for an instant by
            # another lease or submit. Wait for the first such row instead of skipping it, so
            # "no task" always means the queue really is empty for this annotator.
            ids = list(
                candidates.select_for_update(no_key=True, of=("self",)).values_list(
                    "pk", flat=True
                )[:1]
            )
            if not ids:
                return None
        # Fresh statement, rows locked: the truth for these tasks.
        mine = Assignment.objects.filter(task=OuterRef("pk"), annotator=annotator)
        fresh = {
            row[0]: row
            for row in Task.objects.filter(pk__in=ids)
            .annotate(
                live=_live_leases_of_others(annotator, now),
                blocked=_blocking_for(annotator, now),
                reuse=Subquery(mine.values("pk")[:1]),
            )
            .values_list("pk", "submitted_count", "live", "blocked", "reuse")
        }
        for task_id in ids:
            _, submitted, live, blocked, reuse = fresh[task_id]
            full = not gold and submitted + live >= project.annotations_per_task
            if blocked or full:
                rejected.append(task_id)
                continue
            lease = _grant_lease(annotator, project, task_id=task_id, reuse=reuse, now=now)
            if lease is not None:
                return lease
            rejected.append(task_id)
    return None


def _grant_lease(
    annotator: User, project: Project, *, task_id: int, reuse: int | None, now
) -> Assignment | None:
    until = now + timedelta(seconds=project.lease_seconds)
    if reuse is not None:  # the annotator's own expired lease: same row, same display order
        revived = Assignment.objects.filter(
            pk=reuse, state__in=[LEASED, EXPIRED], leased_until__lte=now
        ).update(state=LEASED, leased_at=now, leased_until=until)
        return Assignment.objects.get(pk=reuse) if revived else None
    order = list(
        TaskResponse.objects.filter(task_id=task_id)
        .order_by("position")
        .values_list("response_id", flat=True)
    )
    if project.randomize_positions:
        rng.shuffle(order)
    return Assignment.objects.create(
        task_id=task_id,
        annotator=annotator,
        display_order=order,
        leased_at=now,
        leased_until=until,
    )


def _live_lease(annotator: User, project: Project, now) -> Assignment | None:
    return (
        Assignment.objects.filter(
            annotator=annotator, task__project=project, state=LEASED, leased_until__gt=now
        )
        .order_by("leased_at", "id")
        .first()
    )


def live_lease(*, annotator: User, project: Project) -> Assignment | None:
    """The annotator's live lease in ``project``, or ``None``: a read that leases nothing
    (what the workspace shows on a GET). On PostgreSQL it comes with its task content."""
    if not project.is_active:
        return None
    if pg.enabled():
        return pg.live_lease(annotator, project, timezone.now())
    return _live_lease(annotator, project, timezone.now())


def _cap_reached(annotator: User, project: Project, membership: Membership) -> str | None:
    """Which cap of the membership the annotator has reached, in words, or None."""
    total, today = judgments_counted(user=annotator, project_id=project.pk)
    if membership.max_judgments is not None and total >= membership.max_judgments:
        return f"you reached your cap of {membership.max_judgments} judgments in this project"
    if membership.max_per_day is not None and today >= membership.max_per_day:
        return (
            f"you reached your cap of {membership.max_per_day} judgments today; come back tomorrow"
        )
    return None


def next_task(*, annotator: User, project: Project) -> Assignment | None:
    """The annotator's live lease in ``project`` if any, else a new lease, else ``None``.

    Only members who annotate in the project lease (``roles.require_annotator``: 404 / 403
    otherwise); a member who reached a cap keeps a live lease but gets no new one
    (``CapReachedError``). Without caps this costs no query (the membership is remembered).

    ``project`` may be a few seconds old (``selectors.cached_workspace_project``): the overlap
    and ``is_active`` are read from the database. On PostgreSQL the lease comes with its task
    content attached (see ``selectors.with_task``)."""
    if not project.is_active:
        return None
    membership = require_annotator(annotator, project.pk)
    if membership is not None and membership.capped:
        reached = _cap_reached(annotator, project, membership)
        if reached is not None:
            live = live_lease(annotator=annotator, project=project)
            if live is None:
                raise CapReachedError(reached)
            return live
    if pg.enabled():
        pools = [False]
        if project.gold_ratio > 0 and rng.random() < project.gold_ratio:
            pools = [True, False]
        return pg.next_task(
            annotator,
            project,
            pools,
            timezone.now(),
            tries=LEASE_TRIES,
            candidates=LEASE_CANDIDATES,
        )
    with transaction.atomic():
        project = Project.objects.get(pk=project.pk)  # the overlap as stored now
        if not project.is_active:
            return None
        now = timezone.now()
        live = _live_lease(annotator, project, now)
        if live is not None:
            return live
        pools = [False]
        if project.gold_ratio > 0 and rng.random() < project.gold_ratio:
            pools = [True, False]
        for gold in pools:
            assignment = _lease_from_pool(annotator, project, gold=gold, now=now)
            if assignment is not None:
                return assignment
    return None


def expire_leases(*, now=None) -> int:
    """Mark leases past their time as expired (tidying only: the engine already ignores them)."""
    return Assignment.objects.filter(state=LEASED, leased_until__lte=now or timezone.now()).update(
        state=EXPIRED
    )


@transaction.atomic
def skip_task(*, assignment: Assignment, annotator: User, reason: str) -> Assignment:
    """Give a leased task back with a reason; it is re-offered to others, never to the skipper."""
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("say briefly why you skip this task")
    locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if locked.annotator_id != annotator.pk:
        raise NotYourAssignmentError("this task is leased to another annotator")
    if locked.state == SKIPPED:
        return locked
    if locked.state == SUBMITTED:
        raise AlreadySubmittedError("this task was already submitted; it cannot be skipped")
    locked.state = SKIPPED
    locked.skip_reason = reason[:500]
    locked.save(update_fields=["state", "skip_reason"])
    events.publish(
        "assignment.skipped",
        assignment_id=locked.pk,
        task_id=locked.task_id,
        annotator_id=annotator.pk,
    )
    return locked
