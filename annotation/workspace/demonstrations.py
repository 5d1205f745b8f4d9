"""SFT demonstrations: an annotator's edited response."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.errors import NotYourAssignmentError, ProjectInactiveError
from annotation.models import (
    Assignment,
    Demonstration,
    Response,
    Task,
    TaskResponse,
)
from annotation.principles import selectors as principle_selectors
from annotation.roles import require_annotator
from annotation.workspace.submission import (
    INACTIVE,
    MAX_TEXT,
    claim_lease,
    clean_key,
    finish_assignment,
    is_int,
    lock_task,
    stored_under_key,
)
from common import events
from common.errors import DomainError

User = get_user_model()


def create_demonstration(
    *,
    annotator: User,
    task: Task,
    text: str,
    based_on: Response | None = None,
    cited: Sequence[str] = (),
    idempotency_key: str | None = None,
    time_spent_ms: int | None = None,
) -> Demonstration:
    """An ideal answer for ``task``'s prompt, written or edited from one of its responses.

    On a demonstrate task it completes the annotator's lease (like a submitted judgment); on
    another task kind the annotator must have worked on that task. Idempotent on the key.
    """
    key = clean_key(idempotency_key)
    replay = stored_under_key(Demonstration, key, annotator=annotator, task_id=task.pk)
    if replay is not None:
        return replay
    require_annotator(annotator, task.project_id)
    if not isinstance(text, str) or not text.strip():
        raise DomainError("a demonstration needs text")
    if len(text) > 5 * MAX_TEXT:
        raise DomainError(f"a demonstration is limited to {5 * MAX_TEXT} characters")
    if time_spent_ms is not None and (not is_int(time_spent_ms) or time_spent_ms < 0):
        raise DomainError("time_spent_ms must be a non-negative integer")
    try:
        with transaction.atomic():
            locked_task = lock_task(task.pk)
            if not locked_task.project.is_active:
                raise ProjectInactiveError(INACTIVE)
            assignment = (
                Assignment.objects.select_for_update()
                .filter(task=locked_task, annotator=annotator)
                .first()
            )
            replay = stored_under_key(Demonstration, key, annotator=annotator, task_id=task.pk)
            if replay is not None:
                return replay
            now = timezone.now()
            if locked_task.kind == Task.Kind.DEMONSTRATE:
                if assignment is None:
                    raise NotYourAssignmentError("this demonstrate task is not leased to you")
                claim_lease(assignment, locked_task, now, submitted=locked_task.submitted_count)
            elif assignment is None:
                raise DomainError("write demonstrations for tasks you have worked on")
            response_ids = set(
                TaskResponse.objects.filter(task=locked_task).values_list("response_id", flat=True)
            )
            if based_on is not None and based_on.pk not in response_ids:
                raise DomainError("based_on must be one of this task's responses")
            principles = principle_selectors.project_principles(locked_task.project).by_key
            if isinstance(cited, str) or not all(isinstance(k, str) for k in cited):
                raise DomainError("cited must be a list of principle keys")
            unknown = sorted({k for k in cited if k not in principles}, key=str)
            if unknown:
                raise DomainError(f"unknown principle key(s): {', '.join(map(str, unknown))}")
            demonstration = Demonstration.objects.create(
                prompt_id=locked_task.prompt_id,
                task=locked_task,
                annotator=annotator,
                text=text,
                based_on=based_on,
                idempotency_key=key,
                time_spent_ms=time_spent_ms,
            )
            through = Demonstration.cited_principles.through
            through.objects.bulk_create(
                through(demonstration_id=demonstration.pk, principle_id=principles[k].pk)
                for k in dict.fromkeys(cited)
            )
            if locked_task.kind == Task.Kind.DEMONSTRATE:
                finish_assignment(assignment, locked_task, now)
            events.publish(
                "demonstration.created",
                demonstration_id=demonstration.pk,
                task_id=locked_task.pk,
                project_id=locked_task.project_id,
                annotator_id=annotator.pk,
            )
    except IntegrityError:
        replay = stored_under_key(Demonstration, key, annotator=annotator, task_id=task.pk)
        if replay is not None:
            return replay
        raise
    return demonstration
