"""What every submission shares (judgments and demonstrations): the idempotency-key replay,
the task lock, the lease claim."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import F

from annotation.errors import AlreadySubmittedError, IdempotencyConflictError, LeaseExpiredError
from annotation.models import (
    Assignment,
    Task,
)
from annotation.workspace.leasing import LEASED, SKIPPED, SUBMITTED
from common.errors import DomainError

User = get_user_model()


MAX_TEXT = 20_000


INACTIVE = "this project was deactivated and takes no more submissions; nothing was saved"


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def clean_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if not isinstance(key, str) or len(key) > 100:
        raise DomainError("idempotency_key must be a string of at most 100 characters")
    return key


def stored_under_key(model, key: str | None, *, annotator: User, **same: object):
    """The record already stored under ``key`` (a retry), or ``None``; a key reused for
    anything else is a conflict."""
    if key is None:
        return None
    existing = model.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if existing.annotator_id != annotator.pk or any(
        getattr(existing, name) != value for name, value in same.items()
    ):
        raise IdempotencyConflictError(
            "this idempotency key was already used for a different submission"
        )
    return existing


def lock_task(task_id: int) -> Task:
    return (
        Task.objects.select_for_update(no_key=True, of=("self",))
        .select_related("project__principle_set")
        .get(pk=task_id)
    )


def claim_lease(locked: Assignment, task: Task, now, *, submitted: int) -> None:
    """Accept work on ``locked`` (task row already locked; ``submitted`` is its current
    count): a live lease always; an expired one only while the task still has room."""
    if locked.state == SUBMITTED:
        raise AlreadySubmittedError(
            "this task was already submitted; change it from your history while editable"
        )
    if locked.state == SKIPPED:
        raise AlreadySubmittedError("you skipped this task")
    if locked.state == LEASED and locked.leased_until > now:
        return
    if task.is_gold:
        return
    live = (
        Assignment.objects.filter(task_id=task.pk, state=LEASED, leased_until__gt=now)
        .exclude(pk=locked.pk)
        .count()
    )
    if submitted + live >= task.project.annotations_per_task:
        raise LeaseExpiredError(
            "your lease on this task expired and other annotators completed it; "
            "nothing was saved — take the next task"
        )


def finish_assignment(locked: Assignment, task: Task, now) -> None:
    Assignment.objects.filter(pk=locked.pk).update(state=SUBMITTED, submitted_at=now)
    Task.objects.filter(pk=task.pk).update(submitted_count=F("submitted_count") + 1)
    locked.state, locked.submitted_at = SUBMITTED, now
