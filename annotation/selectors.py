"""Read paths for the annotation domain."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Least
from django.utils import timezone
from django.utils.safestring import SafeString

from annotation.models import (
    Assignment,
    Demonstration,
    Judgment,
    Principle,
    PrincipleSet,
    PrincipleVerdict,
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)
from annotation.rendering import render_markdown
from annotation.timed_cache import TimedCache


def active_projects() -> QuerySet[Project]:
    return Project.objects.filter(is_active=True).select_related("principle_set")


# ---- assignment engine: reads for the annotator workspace
#
# Blindness: nothing here loads ``Response.source`` (``.only("id", "text")``), and responses are
# addressed by their *slot* (A, B, … in the order this assignment shows them), never by id, so
# neither the source nor the import order (e.g. HH-RLHF's chosen-first ids) reaches a page.

SLOT_LETTERS = "ABCDEFGH"  # rank tasks have at most 8 responses
KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass(frozen=True)
class PrincipleIndex:
    rows: tuple[Principle, ...]
    by_key: dict[str, Principle]


_PRINCIPLE_CACHE: dict[tuple[int, datetime], PrincipleIndex] = {}


def project_principles(project: Project) -> PrincipleIndex:
    """The project's principles in document order, and by key.

    Published principle sets are immutable, so they are cached per process, keyed by the set's
    id and publish time; a draft set is read each time.
    """
    principle_set = project.principle_set
    key = (principle_set.pk, principle_set.published_at)
    if principle_set.published_at is not None and key in _PRINCIPLE_CACHE:
        return _PRINCIPLE_CACHE[key]
    rows = tuple(Principle.objects.filter(principle_set_id=principle_set.pk).order_by("position"))
    index = PrincipleIndex(rows=rows, by_key={p.key: p for p in rows})
    if principle_set.published_at is not None:
        _PRINCIPLE_CACHE[key] = index
    return index


# The workspace's per-request reads. On PostgreSQL they are single plain statements built
# from the models' own metadata (the ORM spends more time compiling these joins than the
# database spends answering them); elsewhere the ORM does the same reads.


def _select(model, alias: str) -> str:
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


def _instance(model, values: list):
    """A model instance from raw column values, with the fields' own database converters."""
    fields = model._meta.concrete_fields
    converted = [
        f.from_db_value(v, None, connection)
        if isinstance(v, str) and hasattr(f, "from_db_value")
        else v
        for f, v in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


@contextmanager
def pg_cursor():
    """A server-side-binding cursor on Django's own connection (same transaction) whose
    statements are prepared once per connection instead of parsed and planned per request.
    Database errors surface as Django's (``IntegrityError`` …). PostgreSQL only."""
    import psycopg

    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django's default: its own cursors never prepare
        raw.prepare_threshold = 5
        # Plan each prepared statement once: these statements are written for their indexes,
        # and re-planning them per call (PostgreSQL's "custom plans") cost more than running
        # them. Django's own queries are not prepared and keep being planned per call.
        raw.execute("SET plan_cache_mode = force_generic_plan")
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        yield cursor


def _raw_rows(sql: str, params: dict, *models) -> list | None:
    """The first row of ``sql`` split into one instance per model (``None`` if no row)."""
    with pg_cursor() as cursor:
        cursor.execute(sql, params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    out, start = [], 0
    for model in models:
        width = len(model._meta.concrete_fields)
        out.append(_instance(model, list(row[start : start + width])))
        start += width
    return out


def _table(model) -> str:
    return model._meta.db_table


def workspace_project(*, slug: str) -> Project:
    """An active project by slug, with its principle set (raises ``Project.DoesNotExist``)."""
    if connection.vendor != "postgresql":
        return Project.objects.select_related("principle_set").get(slug=slug, is_active=True)
    rows = _raw_rows(
        f"SELECT {_select(Project, 'p')}, {_select(PrincipleSet, 's')} FROM {_table(Project)} p "
        f"JOIN {_table(PrincipleSet)} s ON s.id = p.principle_set_id "
        "WHERE p.slug = %(slug)s AND p.is_active",
        {"slug": slug},
        Project,
        PrincipleSet,
    )
    if rows is None:
        raise Project.DoesNotExist(slug)
    project, principle_set = rows
    project.principle_set = principle_set
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


def cached_workspace_project(*, slug: str) -> Project:
    """``workspace_project``, remembered per process (see above); the instance is shared
    between requests: read-only."""
    return _PROJECTS.get(slug, lambda: workspace_project(slug=slug))


def forget_workspace_projects() -> None:
    """Drop this process's cached projects (on every save or delete of a project or set)."""
    _PROJECTS.clear()


def assignment_for_annotator(
    *, annotator: AbstractBaseUser, assignment_id: int, with_prompt: bool = True
) -> Assignment:
    """One of the annotator's own assignments, with its task, project and principle set (and
    the prompt unless ``with_prompt=False``); raises ``Assignment.DoesNotExist`` otherwise."""
    if connection.vendor != "postgresql":
        related = ["task__project__principle_set"] + (["task__prompt"] if with_prompt else [])
        return Assignment.objects.select_related(*related).get(
            pk=assignment_id, annotator=annotator
        )
    models = [Assignment, Task, Project, PrincipleSet] + ([Prompt] if with_prompt else [])
    columns = ", ".join(
        _select(m, a) for m, a in zip(models, ["a", "t", "p", "s", "q"], strict=False)
    )
    rows = _raw_rows(
        f"SELECT {columns} FROM {_table(Assignment)} a "
        f"JOIN {_table(Task)} t ON t.id = a.task_id "
        f"JOIN {_table(Project)} p ON p.id = t.project_id "
        f"JOIN {_table(PrincipleSet)} s ON s.id = p.principle_set_id "
        + (f"JOIN {_table(Prompt)} q ON q.id = t.prompt_id " if with_prompt else "")
        + "WHERE a.id = %(id)s AND a.annotator_id = %(me)s",
        {"id": assignment_id, "me": annotator.pk},
        *models,
    )
    if rows is None:
        raise Assignment.DoesNotExist(assignment_id)
    assignment, task, project, principle_set, *prompt = rows
    project.principle_set = principle_set
    task.project = project
    if prompt:
        task.prompt = prompt[0]
    assignment.task = task
    return assignment


# The task content a workspace page shows for an assignment: the task, its prompt and its
# responses' texts (by id), selected from ``TASK_CONTENT_FROM``. The lease statements return
# it next to the assignment, so a fresh lease needs no further query (``attach_task``).
TASK_CONTENT_COLUMNS = (
    f"{_select(Task, 't')}, {_select(Prompt, 'q')}, "
    f"(SELECT json_object_agg(r.id, r.text) FROM {_table(TaskResponse)} tr "
    f"JOIN {_table(Response)} r ON r.id = tr.response_id WHERE tr.task_id = t.id)"
)
TASK_CONTENT_FROM = f"{_table(Task)} t JOIN {_table(Prompt)} q ON q.id = t.prompt_id"


def attach_task(assignment: Assignment, row: Sequence, project: Project) -> Assignment:
    """Attach the task content of ``row`` (``TASK_CONTENT_COLUMNS``' values) and ``project``."""
    width = len(Task._meta.concrete_fields)
    task = _instance(Task, list(row[:width]))
    task.prompt = _instance(Prompt, list(row[width:-1]))
    texts = row[-1] or {}
    texts = json.loads(texts) if isinstance(texts, str) else texts
    assignment._response_texts = {int(k): v for k, v in texts.items()}
    task.project = project
    assignment.task = task
    return assignment


def with_task(assignment: Assignment, project: Project) -> Assignment:
    """Attach the task, its prompt and the shown responses' texts to a lease (one query, none
    when the lease statement already did; ``project`` is reused)."""
    if hasattr(assignment, "_response_texts"):
        return assignment
    if connection.vendor != "postgresql":
        task = Task.objects.select_related("prompt").get(pk=assignment.task_id)
        task.project = project
        assignment.task = task
        return assignment
    with pg_cursor() as cursor:
        cursor.execute(
            f"SELECT {TASK_CONTENT_COLUMNS} FROM {TASK_CONTENT_FROM} WHERE t.id = %(task)s",
            {"task": assignment.task_id},
            prepare=True,
        )
        row = cursor.fetchone()
    return attach_task(assignment, row, project)


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
        texts = dict(
            Response.objects.filter(pk__in=display_order)
            .only("id", "text")
            .values_list("id", "text")
        )
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
        slots=slots_for(assignment.display_order, getattr(assignment, "_response_texts", None)),
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


@dataclass(frozen=True)
class QueueEntry:
    project: Project
    tasks: int
    needed: int
    done: int
    mine_total: int
    mine_today: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.needed) if self.needed else 100


def annotator_queue(*, annotator: AbstractBaseUser) -> list[QueueEntry]:
    """Per active project: judgments done / needed (overlap × tasks, gold excluded), and the
    annotator's own judgments and demonstrations, in total and today."""
    projects = list(Project.objects.filter(is_active=True).select_related("principle_set"))
    ids = [p.pk for p in projects]
    progress = {
        row["project"]: row
        for row in Task.objects.filter(project__in=ids, is_gold=False)
        .values("project")
        .annotate(
            tasks=Count("id"),
            done=Sum(Least("submitted_count", F("project__annotations_per_task"))),
        )
    }
    today = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    mine: dict[int, list[int]] = {}
    for model in (Judgment, Demonstration):
        for row in (
            model.objects.filter(annotator=annotator, task__project__in=ids)
            .values("task__project")
            .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=today)))
        ):
            entry = mine.setdefault(row["task__project"], [0, 0])
            entry[0] += row["total"]
            entry[1] += row["today"]
    out = []
    for project in projects:
        row = progress.get(project.pk, {"tasks": 0, "done": 0})
        total, today_count = mine.get(project.pk, [0, 0])
        out.append(
            QueueEntry(
                project=project,
                tasks=row["tasks"],
                needed=row["tasks"] * project.annotations_per_task,
                done=row["done"] or 0,
                mine_total=total,
                mine_today=today_count,
            )
        )
    return out


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


# ---- data in and out (REST API)

DIFF_FIELDS = ("title", "text", "section", "kind", "authority", "declared_priority", "position")


def principle_set_diff(base, other) -> dict:
    """Principles added, removed and changed (field → [base, other]) from ``base`` to
    ``other``, matched by their stable ``key``."""
    before = {p.key: p for p in Principle.objects.filter(principle_set=base)}
    after = {p.key: p for p in Principle.objects.filter(principle_set=other)}
    changed = []
    for key in sorted(before.keys() & after.keys(), key=lambda k: after[k].position):
        fields = {
            name: [getattr(before[key], name), getattr(after[key], name)]
            for name in DIFF_FIELDS
            if getattr(before[key], name) != getattr(after[key], name)
        }
        if fields:
            changed.append({"key": key, "fields": fields})
    return {
        "base": base.label,
        "other": other.label,
        "added": sorted(after.keys() - before.keys(), key=lambda k: after[k].position),
        "removed": sorted(before.keys() - after.keys(), key=lambda k: before[k].position),
        "changed": changed,
    }
