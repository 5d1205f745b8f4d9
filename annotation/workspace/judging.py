"""Judgments: validate, submit (idempotent), edit, flag."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotation.errors import (
    EditWindowClosedError,
    NotYourAssignmentError,
    ProjectInactiveError,
)
from annotation.models import (
    Assignment,
    Judgment,
    Principle,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)
from annotation.principles import selectors as principle_selectors
from annotation.roles import STAFF_ROLES, project_role, require_annotator
from annotation.vocabulary import is_not_applicable
from annotation.workspace import pg
from annotation.workspace.leasing import LEASED, SUBMITTED
from annotation.workspace.submission import (
    INACTIVE,
    MAX_TEXT,
    claim_lease,
    clean_key,
    is_int,
    stored_under_key,
)
from common import events
from common.errors import DomainError

User = get_user_model()


@dataclass(frozen=True)
class CleanJudgment:
    """A judgment's input after validation, in response ids and principle objects."""

    ordering: list[list[int]]
    strength: int
    verdicts: list[tuple[Principle, str, int | None]]
    decisive: list[Principle]


def clean_judgment(
    *,
    project: Project,
    task: Task,
    response_ids: Sequence[int],
    ordering: object,
    strength: object = 0,
    verdicts: object = None,
    decisive: object = (),
    discretion: bool = False,
    discretion_note: str = "",
    rationale: str = "",
    confidence: object = None,
    time_spent_ms: object = None,
) -> CleanJudgment:
    """Validate a judgment against its task and project; raises ``DomainError`` with a reason."""
    valid = set(response_ids)
    if not isinstance(ordering, list | tuple) or not ordering:
        raise DomainError(
            "ordering must be a non-empty list of buckets of response ids, best first"
        )
    seen: list[int] = []
    buckets: list[list[int]] = []
    for bucket in ordering:
        if not isinstance(bucket, list | tuple) or not bucket:
            raise DomainError("each ordering bucket must be a non-empty list of response ids")
        for rid in bucket:
            if not is_int(rid):
                raise DomainError(f"response ids must be integers, got {rid!r}")
            if rid not in valid:
                raise DomainError(f"response {rid} is not part of task {task.pk}")
            if rid in seen:
                raise DomainError(f"response {rid} appears more than once in the ordering")
            seen.append(rid)
        buckets.append(list(bucket))
    missing = sorted(valid - set(seen))
    if missing:
        raise DomainError(
            "the ordering must place every response of the task; missing: "
            + ", ".join(map(str, missing))
        )
    if not is_int(strength) or not 0 <= strength <= 3:
        raise DomainError("strength must be 0 (none), 1 (slightly), 2 (clearly) or 3 (much better)")
    if strength and len(buckets) == 1:
        raise DomainError("a tie has no strength; send strength 0")
    if strength and len(valid) > 2:
        raise DomainError("strength applies to pairwise comparisons only; send strength 0")

    principles = principle_selectors.project_principles(project).by_key
    verdicts = {} if verdicts is None else verdicts
    if not isinstance(verdicts, dict):
        raise DomainError("verdicts must map principle keys to a response id, 'tie' or 'n/a'")
    unknown = sorted(set(verdicts) - set(principles))
    if unknown:
        raise DomainError(
            f"unknown principle key(s) {', '.join(map(str, unknown))} for "
            f"{project.principle_set.label}"
        )
    rows: list[tuple[Principle, str, int | None]] = []
    kinds: dict[str, str] = {}
    for key, principle in principles.items():
        value = verdicts.get(key)
        if is_not_applicable(value):
            row = (principle, PrincipleVerdict.Verdict.NOT_APPLICABLE, None)
        elif value == "tie":
            row = (principle, PrincipleVerdict.Verdict.TIE, None)
        elif is_int(value) and value in valid:
            row = (principle, PrincipleVerdict.Verdict.PREFERS, value)
        else:
            raise DomainError(
                f"the verdict for {key!r} must be a response id of this task, 'tie' or 'n/a'; "
                f"got {value!r}"
            )
        rows.append(row)
        kinds[key] = row[1]

    if (
        isinstance(decisive, str)
        or not isinstance(decisive, list | tuple | set | frozenset)
        or not all(isinstance(k, str) for k in decisive)
    ):
        raise DomainError("decisive must be a list of principle keys")
    decisive_rows = []
    for key in dict.fromkeys(decisive):
        if key not in principles:
            raise DomainError(f"unknown decisive principle {key!r}")
        if kinds[key] != PrincipleVerdict.Verdict.PREFERS:
            raise DomainError(
                f"decisive principle {key!r} must prefer a response (its verdict is "
                f"{'a tie' if kinds[key] == PrincipleVerdict.Verdict.TIE else 'n/a'})"
            )
        decisive_rows.append(principles[key])
    if discretion and decisive_rows:
        raise DomainError(
            "'my own judgment' means no principle decided: clear the decisive principles "
            "or the discretion flag"
        )
    if len(discretion_note or "") > 2000:
        raise DomainError("the discretion note is limited to 2000 characters")
    if len(rationale or "") > MAX_TEXT:
        raise DomainError(f"the rationale is limited to {MAX_TEXT} characters")
    if confidence is not None and (not is_int(confidence) or not 1 <= confidence <= 5):
        raise DomainError("confidence must be 1..5 or empty")
    if time_spent_ms is not None and (not is_int(time_spent_ms) or time_spent_ms < 0):
        raise DomainError("time_spent_ms must be a non-negative integer")
    return CleanJudgment(ordering=buckets, strength=strength, verdicts=rows, decisive=decisive_rows)


def _store_principles(judgment: Judgment, clean: CleanJudgment) -> None:
    PrincipleVerdict.objects.bulk_create(_remember_written(judgment, clean).written_verdicts)
    if clean.decisive:
        through = Judgment.decisive_principles.through
        through.objects.bulk_create(
            through(judgment_id=judgment.pk, principle_id=p.pk) for p in clean.decisive
        )


def submit_judgment(
    *,
    assignment: Assignment,
    annotator: User,
    ordering: list[list[int]],
    strength: int = 0,
    both_bad: bool = False,
    verdicts: dict[str, int | str] | None = None,
    decisive: Sequence[str] = (),
    discretion: bool = False,
    discretion_note: str = "",
    rationale: str = "",
    confidence: int | None = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
    origin: str = "ui",
) -> Judgment:
    """Store the annotator's judgment for a leased compare/rank task.

    ``ordering``: buckets of response ids, best first (ties share a bucket). ``verdicts``:
    principle key → preferred response id, ``"tie"`` or ``"n/a"`` (missing keys are n/a; every
    principle gets a stored verdict). ``decisive``: principle keys that decided (each must prefer
    a response). Idempotent on ``idempotency_key``: a retry returns the stored judgment. A new
    judgment comes back with what was written (``Judgment.written_verdicts`` and
    ``written_decisive``); a retry's stored judgment without.
    """
    key = clean_key(idempotency_key)
    if assignment.annotator_id != annotator.pk:
        raise NotYourAssignmentError("this task is leased to another annotator")
    task = _task_with_project(assignment)
    require_annotator(annotator, task.project_id)  # a deactivated member submits nothing
    if task.kind not in (Task.Kind.COMPARE, Task.Kind.RANK):
        raise DomainError(f"a {task.kind} task takes a demonstration, not a judgment")
    clean = clean_judgment(
        project=task.project,
        task=task,
        response_ids=assignment.display_order,
        ordering=ordering,
        strength=strength,
        verdicts=verdicts,
        decisive=decisive,
        discretion=discretion,
        discretion_note=discretion_note,
        rationale=rationale,
        confidence=confidence,
        time_spent_ms=time_spent_ms,
    )
    fields = {
        "both_bad": bool(both_bad),
        "rationale": rationale or "",
        "confidence": confidence,
        "time_spent_ms": time_spent_ms,
        "discretion": bool(discretion),
        "discretion_note": (discretion_note or "") if discretion else "",
        "idempotency_key": key,
        "origin": origin,
    }
    follow_up = bool(both_bad) and task.project.both_bad_creates_demonstration

    def announce(judgment: Judgment) -> None:
        """Inside the write's transaction: the follow-up task, then the post-commit event."""
        if follow_up:
            _follow_up_demonstration(judgment, task)
        events.publish(
            "judgment.created",
            judgment_id=judgment.pk,
            task_id=task.pk,
            project_id=task.project_id,
            annotator_id=annotator.pk,
        )

    if pg.enabled():
        judgment = pg.submit(
            assignment, annotator, task, clean, fields, follow_up=follow_up, then=announce
        )
        if judgment is not None:
            return _remember_written(judgment, clean)
    try:
        with transaction.atomic():
            # Counting the submission first takes the task row lock that every lease takes.
            Task.objects.filter(pk=task.pk).update(submitted_count=F("submitted_count") + 1)
            now = timezone.now()
            claimed = Assignment.objects.filter(
                pk=assignment.pk,
                annotator_id=annotator.pk,
                state=LEASED,
                leased_until__gt=now,
                task__project__is_active=True,
            ).update(state=SUBMITTED, submitted_at=now)
            if not claimed:  # a retry, an expired lease, a deactivated project, not a lease
                _claim_slowly(assignment, annotator, task, key, now)
            judgment = Judgment.objects.create(
                task=task,
                annotator=annotator,
                assignment_id=assignment.pk,
                ordering=clean.ordering,
                strength=clean.strength,
                **fields,
            )
            _store_principles(judgment, clean)
            announce(judgment)
    except _Replay as replay:
        return replay.judgment
    except IntegrityError:
        # Two retries with one key raced past the checks: the loser returns the winner's row.
        replay = stored_under_key(Judgment, key, annotator=annotator, assignment_id=assignment.pk)
        if replay is not None:
            return replay
        raise
    assignment.state, assignment.submitted_at = SUBMITTED, now
    return judgment


def _remember_written(judgment: Judgment, clean: CleanJudgment) -> Judgment:
    """Set what was just written on the new judgment (``Judgment.written_verdicts``)."""
    judgment.written_verdicts = [
        PrincipleVerdict(
            judgment_id=judgment.pk,
            principle=principle,
            verdict=verdict,
            preferred_response_id=rid,
        )
        for principle, verdict, rid in clean.verdicts
    ]
    judgment.written_decisive = sorted(
        clean.decisive, key=lambda p: (p.principle_set_id, p.position)
    )  # the order of Principle.Meta.ordering, as decisive_principles reads them
    return judgment


class _Replay(Exception):
    """Control flow, not an error: roll back, then return the stored judgment."""

    def __init__(self, judgment: Judgment) -> None:
        self.judgment = judgment


def _task_with_project(assignment: Assignment) -> Task:
    """The assignment's task with project and principle set (loaded ones are reused)."""
    if Assignment.task.is_cached(assignment):
        task = assignment.task
        if Task.project.is_cached(task) and Project.principle_set.is_cached(task.project):
            return task
    return Task.objects.select_related("project__principle_set").get(pk=assignment.task_id)


def _claim_slowly(assignment: Assignment, annotator: User, task: Task, key, now) -> None:
    """The submit's claim when the one-statement claim did not apply (task row locked)."""
    locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if locked.annotator_id != annotator.pk:
        raise NotYourAssignmentError("this task is leased to another annotator")
    replay = stored_under_key(Judgment, key, annotator=annotator, assignment_id=locked.pk)
    if replay is not None:
        raise _Replay(replay)
    if not Project.objects.filter(pk=task.project_id, is_active=True).exists():
        raise ProjectInactiveError(INACTIVE)
    # the count already includes this submission (incremented above)
    submitted = Task.objects.filter(pk=task.pk).values_list("submitted_count", flat=True).get()
    claim_lease(locked, task, now, submitted=submitted - 1)
    Assignment.objects.filter(pk=locked.pk).update(state=SUBMITTED, submitted_at=now)


def edit_judgment(
    *,
    judgment: Judgment,
    annotator: User,
    ordering: list[list[int]],
    strength: int = 0,
    both_bad: bool = False,
    verdicts: dict[str, int | str] | None = None,
    decisive: Sequence[str] = (),
    discretion: bool = False,
    discretion_note: str = "",
    rationale: str = "",
    confidence: int | None = None,
    time_spent_ms: int | None = None,
) -> Judgment:
    """Replace one's own judgment within the project's edit window (``edit_window_seconds``
    after it was first submitted); ``time_spent_ms`` is added to the time already spent."""
    with transaction.atomic():
        locked = (
            Judgment.objects.select_for_update(of=("self",))
            .select_related("task__project__principle_set", "assignment")
            .get(pk=judgment.pk)
        )
        if locked.annotator_id != annotator.pk:
            raise NotYourAssignmentError("this judgment belongs to another annotator")
        task = locked.task
        window = task.project.edit_window_seconds
        if timezone.now() > locked.created_at + timedelta(seconds=window):
            raise EditWindowClosedError(
                f"judgments can be changed for {window // 60} min after submitting; "
                "this one is read-only now"
            )
        response_ids = (
            locked.assignment.display_order
            if locked.assignment is not None
            else list(TaskResponse.objects.filter(task=task).values_list("response_id", flat=True))
        )
        clean = clean_judgment(
            project=task.project,
            task=task,
            response_ids=response_ids,
            ordering=ordering,
            strength=strength,
            verdicts=verdicts,
            decisive=decisive,
            discretion=discretion,
            discretion_note=discretion_note,
            rationale=rationale,
            confidence=confidence,
            time_spent_ms=time_spent_ms,
        )
        was_both_bad = locked.both_bad
        locked.ordering = clean.ordering
        locked.strength = clean.strength
        locked.both_bad = bool(both_bad)
        locked.rationale = rationale or ""
        locked.confidence = confidence
        locked.discretion = bool(discretion)
        locked.discretion_note = (discretion_note or "") if discretion else ""
        if time_spent_ms is not None:
            locked.time_spent_ms = (locked.time_spent_ms or 0) + time_spent_ms
        locked.save()
        locked.verdicts.all().delete()
        Judgment.decisive_principles.through.objects.filter(judgment_id=locked.pk).delete()
        _store_principles(locked, clean)
        if both_bad and not was_both_bad and task.project.both_bad_creates_demonstration:
            _follow_up_demonstration(locked, task)
        events.publish(
            "judgment.updated",
            judgment_id=locked.pk,
            task_id=task.pk,
            project_id=task.project_id,
            annotator_id=annotator.pk,
        )
    return locked


def flag_judgment(
    *, judgment: Judgment, by: User, flagged: bool = True, reason: str = ""
) -> Judgment:
    """Flag a doubtful judgment (snapshots with ``exclude_flagged`` leave it out) or clear the
    flag. Admins and managers (global or of the judgment's project) only; the reason, who and
    when are recorded (cleared with the flag)."""
    if project_role(by, judgment.task.project_id) not in STAFF_ROLES:
        raise DomainError("only managers and admins flag judgments")
    reason = reason.strip()
    if flagged and not reason:
        raise DomainError("a flag needs a reason")
    if len(reason) > 500:
        raise DomainError("the reason is limited to 500 characters")
    judgment.flagged = flagged
    judgment.flag_reason = reason if flagged else ""
    judgment.flagged_by = by if flagged else None
    judgment.flagged_at = timezone.now() if flagged else None
    judgment.save(update_fields=["flagged", "flag_reason", "flagged_by", "flagged_at"])
    events.publish(
        "judgment.flagged",
        judgment_id=judgment.pk,
        project_id=judgment.task.project_id,
        flagged=flagged,
    )
    return judgment


def _follow_up_demonstration(judgment: Judgment, task: Task) -> Task | None:
    """A both-bad verdict asks for an ideal answer: one demonstrate task per judged task."""
    if Task.objects.filter(origin_judgment__task=task, kind=Task.Kind.DEMONSTRATE).exists():
        return None
    follow_up = Task.objects.create(
        project_id=task.project_id,
        prompt_id=task.prompt_id,
        kind=Task.Kind.DEMONSTRATE,
        origin_judgment=judgment,
    )
    TaskResponse.objects.bulk_create(
        TaskResponse(task=follow_up, response_id=rid, position=position)
        for rid, position in TaskResponse.objects.filter(task=task).values_list(
            "response_id", "position"
        )
    )
    return follow_up
