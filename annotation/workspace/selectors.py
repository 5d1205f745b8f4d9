"""Read paths for the annotation domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.safestring import SafeString

from annotation.models import (
    Assignment,
    Demonstration,
    Judgment,
    Principle,
    PrincipleVerdict,
    Project,
    Response,
    Task,
)
from annotation.principles.selectors import project_principles
from annotation.vocabulary import SLOT_LETTERS
from annotation.workspace import pg
from common.rendering import render_markdown
from common.timed_cache import TimedCache

KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def workspace_project(*, slug: str | None = None, pk: int | None = None) -> Project:
    """An active project by slug (the pages) or by id (the API), with its principle set (raises
    ``Project.DoesNotExist``)."""
    key = {"slug": slug} if pk is None else {"pk": pk}
    if not pg.enabled():
        return Project.objects.select_related("principle_set").get(**key, is_active=True)
    project = pg.workspace_project(**key)
    if project is None:
        raise Project.DoesNotExist(slug if pk is None else pk)
    return project


# The workspace's project, remembered per process for a few seconds: ``work`` asks on every
# request. A change to the project clears this process's copies at once (``signals``) and
# reaches the other processes within ``PROJECT_CACHE_SECONDS``. What must never be stale is read
# from the project row by the lease statements themselves (the overlap ``annotations_per_task``
# and ``is_active``), so no task is handed beyond a just-lowered overlap and a deactivated
# project leases nothing; its lease length, position shuffling and gold ratio may lag by that
# much.
PROJECT_CACHE_SECONDS = 5.0


_PROJECTS: TimedCache[Project] = TimedCache(PROJECT_CACHE_SECONDS, limit=1000)


def cached_workspace_project(*, slug: str | None = None, pk: int | None = None) -> Project:
    """``workspace_project``, remembered per process (see above); the instance is shared
    between requests: read-only."""
    key = ("slug", slug) if pk is None else ("pk", pk)
    return _PROJECTS.get(key, lambda: workspace_project(slug=slug, pk=pk))


def forget_workspace_projects() -> None:
    """Drop this process's cached projects (on every save or delete of a project or set)."""
    _PROJECTS.clear()


def assignment_for_annotator(
    *, annotator: AbstractBaseUser, assignment_id: int, with_prompt: bool = True
) -> Assignment:
    """One of the annotator's own assignments, with its task, project and principle set (and
    the prompt unless ``with_prompt=False``); raises ``Assignment.DoesNotExist`` otherwise."""
    if not pg.enabled():
        related = ["task__project__principle_set"] + (["task__prompt"] if with_prompt else [])
        return Assignment.objects.select_related(*related).get(
            pk=assignment_id, annotator=annotator
        )
    assignment = pg.assignment_for_annotator(annotator.pk, assignment_id, with_prompt)
    if assignment is None:
        raise Assignment.DoesNotExist(assignment_id)
    return assignment


def with_task(assignment: Assignment, project: Project) -> Assignment:
    """Attach the task, its prompt and the shown responses' texts (``response_texts``) to a
    lease; ``project`` is reused. None when the lease statement already did (PostgreSQL), else
    one query (two on the ORM path)."""
    if assignment.response_texts is not None:
        return assignment
    if not pg.enabled():
        task = Task.objects.select_related("prompt").get(pk=assignment.task_id)
        task.project = project
        assignment.task = task
        assignment.response_texts = response_texts(assignment.display_order)
        return assignment
    return pg.with_task(assignment, project)


def response_texts(response_ids: list[int]) -> dict[int, str]:
    """The texts of these responses, by id (one query)."""
    return dict(Response.objects.filter(pk__in=response_ids).values_list("id", "text"))


@dataclass(frozen=True)
class Slot:
    index: int
    letter: str
    html: SafeString
    text: str


@dataclass(frozen=True)
class PrincipleRow:
    principle: Principle
    verdict: str = "na"  # "0".."7" (a slot), "tie" or "na"
    decisive: bool = False
    cited: bool = False


@dataclass
class Workspace:
    """Everything a compare / rank / demonstrate page shows for one assignment."""

    assignment: Assignment
    task: Task
    project: Project
    kind: str
    messages: list[dict]
    slots: list[Slot]
    principles: list[PrincipleRow]
    initial: dict = field(default_factory=dict)

    @property
    def lease_until(self) -> tuple[str, str]:
        """The lease's end as ISO 8601 and as ``HH:MM``, in the current time zone (what the
        ``date:'c'`` and ``time:"H:i"`` filters print, without their per-call cost)."""
        until = self.assignment.leased_until
        if until is None:
            return "", ""
        until = timezone.localtime(until)
        return until.isoformat(), until.strftime("%H:%M")

    @property
    def rank_positions(self) -> range:
        return range(1, len(self.slots) + 1)

    @property
    def ranked_slots(self) -> list[tuple[Slot, int]]:
        """Each slot with its rank in the form (initially its display position: no ties)."""
        ranks = self.initial.get("ranks") or [s.index + 1 for s in self.slots]
        return list(zip(self.slots, ranks, strict=True))

    @property
    def slot_texts(self) -> list[str]:
        return [s.text for s in self.slots]


def conversation(messages: object) -> list[dict]:
    """A prompt's ``messages`` as ``[{role, html}]``, rendered and sanitized."""
    out = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", ""))
        content = message.get("content", "")
        out.append(
            {
                "role": role if role in KNOWN_ROLES else "other",
                "html": render_markdown(content if isinstance(content, str) else str(content)),
            }
        )
    return out


def slots_for(display_order: list[int], texts: dict[int, str] | None = None) -> list[Slot]:
    if texts is None:
        texts = response_texts(display_order)
    return [
        Slot(
            index=i,
            letter=SLOT_LETTERS[i],
            html=render_markdown(texts.get(rid, "")),
            text=texts.get(rid, ""),
        )
        for i, rid in enumerate(display_order)
    ]


def workspace_for(
    assignment: Assignment, *, judgment: Judgment | None = None, demonstration=None
) -> Workspace:
    """The page model for an assignment; with ``judgment``, prefilled for editing it."""
    task = assignment.task
    project = task.project
    index = project_principles(project)
    verdicts: dict[int, str] = {}
    decisive: set[int] = set()
    initial: dict = {}
    if judgment is not None:
        initial, verdicts, decisive = judgment_initial(judgment, assignment.display_order)
    return Workspace(
        assignment=assignment,
        task=task,
        project=project,
        kind=task.kind,
        messages=conversation(task.prompt.messages),
        slots=slots_for(assignment.display_order, assignment.response_texts),
        principles=[
            PrincipleRow(p, verdict=verdicts.get(p.pk, "na"), decisive=p.pk in decisive)
            for p in index.rows
        ],
        initial=initial,
    )


def judgment_initial(
    judgment: Judgment, display_order: list[int]
) -> tuple[dict, dict[int, str], set[int]]:
    """Form state that reproduces ``judgment`` in slot terms."""
    slot_of = {rid: i for i, rid in enumerate(display_order)}
    buckets = judgment.ordering
    choice = "tie" if len(buckets) == 1 else str(slot_of.get(buckets[0][0], ""))
    ranks = {
        slot_of[rid]: n for n, bucket in enumerate(buckets, 1) for rid in bucket if rid in slot_of
    }
    verdicts = {}
    for v in judgment.verdicts.all():
        if v.verdict == PrincipleVerdict.Verdict.PREFERS:
            verdicts[v.principle_id] = str(slot_of.get(v.preferred_response_id, "na"))
        elif v.verdict == PrincipleVerdict.Verdict.TIE:
            verdicts[v.principle_id] = "tie"
    initial = {
        "choice": choice,
        "ranks": [ranks.get(i, i + 1) for i in range(len(display_order))],
        "strength": judgment.strength,
        "both_bad": judgment.both_bad,
        "discretion": judgment.discretion,
        "discretion_note": judgment.discretion_note,
        "rationale": judgment.rationale,
        "confidence": judgment.confidence,
    }
    decisive = {p.pk for p in judgment.decisive_principles.all()}
    return initial, verdicts, decisive


def describe_ordering(ordering: list[list[int]], display_order: list[int]) -> str:
    """``[[7], [3, 9]]`` shown as A, B, C → ``"A ≻ B = C"`` (slot letters, never ids)."""
    slot_of = {rid: SLOT_LETTERS[i] for i, rid in enumerate(display_order)}
    return " ≻ ".join(
        " = ".join(sorted(slot_of.get(rid, "?") for rid in bucket)) for bucket in ordering
    )


def annotator_judgments(*, annotator: AbstractBaseUser, project: Project) -> QuerySet[Judgment]:
    """The annotator's own judgments in a project, newest first (never anyone else's)."""
    return (
        Judgment.objects.filter(annotator=annotator, task__project=project)
        .select_related("task__prompt", "assignment")
        .order_by("-created_at", "-id")
    )


def annotator_demonstrations(
    *, annotator: AbstractBaseUser, project: Project
) -> QuerySet[Demonstration]:
    return (
        Demonstration.objects.filter(annotator=annotator, task__project=project)
        .select_related("task")
        .prefetch_related("cited_principles")
        .order_by("-created_at", "-id")
    )


def judgment_for_annotator(*, annotator: AbstractBaseUser, judgment_id: int) -> Judgment:
    """One of the annotator's own judgments (raises ``Judgment.DoesNotExist`` otherwise)."""
    return (
        Judgment.objects.select_related(
            "task__prompt", "task__project__principle_set", "assignment"
        )
        .prefetch_related("verdicts", "decisive_principles")
        .get(pk=judgment_id, annotator=annotator)
    )


def judgment_editable_until(judgment: Judgment) -> datetime:
    return judgment.created_at + timedelta(seconds=judgment.task.project.edit_window_seconds)
