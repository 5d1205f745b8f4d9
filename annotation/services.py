"""Write paths for the annotation domain. Keyword-only, typed, one transaction each."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation import selectors, task_copy
from annotation.errors import (
    AlreadySubmittedError,
    DomainError,
    EditWindowClosedError,
    IdempotencyConflictError,
    ImmutableError,
    LeaseExpiredError,
    NotYourAssignmentError,
)
from annotation.models import (
    AnnotatorProfile,
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
from annotation.roles import is_staff_role

User = get_user_model()

# Precedence of authority tiers, highest first; ``declared_priority`` defaults to this rank.
AUTHORITY_RANK = {
    Principle.Authority.PLATFORM: 0,
    Principle.Authority.ROOT: 0,
    Principle.Authority.SYSTEM: 1,
    Principle.Authority.DEVELOPER: 2,
    Principle.Authority.USER: 3,
    Principle.Authority.GUIDELINE: 4,
}


@dataclass(frozen=True)
class PrincipleSpec:
    """A principle before it is stored (what every principle importer produces)."""

    key: str
    title: str
    text: str = ""
    section: str = ""
    kind: str = Principle.Kind.GUIDELINE
    authority: str = Principle.Authority.USER
    declared_priority: int | None = None


@dataclass(frozen=True)
class ResponseSpec:
    text: str
    source: str = ""
    label: str = ""  # "chosen" / "rejected" when the source data carries a verdict
    generation_params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSpec:
    """A prompt with its candidate responses, as parsed from an import file."""

    messages: list[dict]
    responses: list[ResponseSpec]
    external_id: str = ""
    metadata: dict = field(default_factory=dict)
    kind: str = ""  # compare / rank / demonstrate; derived from the response count if empty
    submitted: int = 0  # judgments imported with it (``on_batch`` writes them)


# ---------------------------------------------------------------- principle sets


def _require_draft(principle_set: PrincipleSet) -> None:
    if principle_set.is_published:
        raise ImmutableError(
            f"{principle_set} is published and immutable; fork it to make a new version."
        )


def _principle_rows(principle_set: PrincipleSet, specs: Sequence[PrincipleSpec]) -> list[Principle]:
    keys = [spec.key for spec in specs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise DomainError(f"duplicate principle keys: {', '.join(duplicates)}")
    return [
        Principle(
            principle_set=principle_set,
            position=position,
            **{
                **asdict(spec),
                "declared_priority": spec.declared_priority
                if spec.declared_priority is not None
                else AUTHORITY_RANK[spec.authority],
            },
        )
        for position, spec in enumerate(specs)
    ]


@transaction.atomic
def create_principle_set(
    *,
    name: str,
    principles: Sequence[PrincipleSpec],
    description: str = "",
    source: str = "",
    created_by: User | None = None,
    publish: bool = False,
) -> PrincipleSet:
    """Create the next version of ``name`` (version 1 if new) as a draft, optionally published."""
    latest = PrincipleSet.objects.select_for_update().filter(name=name).order_by("-version").first()
    principle_set = PrincipleSet.objects.create(
        name=name,
        version=(latest.version + 1) if latest else 1,
        parent=latest,
        description=description,
        source=source,
        created_by=created_by,
    )
    Principle.objects.bulk_create(_principle_rows(principle_set, principles))
    if publish:
        return publish_principle_set(principle_set=principle_set)
    return principle_set


@transaction.atomic
def update_principle(*, principle: Principle, **changes: object) -> Principle:
    """Edit a principle of a draft set; published sets refuse every edit."""
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle.principle_set_id)
    _require_draft(principle_set)
    allowed = {"title", "text", "section", "kind", "authority", "declared_priority"}
    unknown = set(changes) - allowed
    if unknown:
        raise DomainError(f"cannot change {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(principle, name, value)
    principle.full_clean()
    principle.save(update_fields=list(changes))
    return principle


@transaction.atomic
def add_principle(*, principle_set: PrincipleSet, spec: PrincipleSpec) -> Principle:
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle_set.pk)
    _require_draft(principle_set)
    position = principle_set.principles.count()
    existing = list(principle_set.principles.values_list("key", flat=True))
    if spec.key in existing:
        raise DomainError(f"duplicate principle key: {spec.key}")
    (row,) = _principle_rows(principle_set, [spec])
    row.position = position
    row.save()
    return row


@transaction.atomic
def remove_principle(*, principle: Principle) -> None:
    _require_draft(PrincipleSet.objects.select_for_update().get(pk=principle.principle_set_id))
    principle.delete()


@transaction.atomic
def publish_principle_set(*, principle_set: PrincipleSet) -> PrincipleSet:
    """Freeze a draft. Publishing twice is refused."""
    principle_set = PrincipleSet.objects.select_for_update().get(pk=principle_set.pk)
    _require_draft(principle_set)
    if not principle_set.principles.exists():
        raise DomainError("a principle set needs at least one principle to be published")
    principle_set.status = PrincipleSet.Status.PUBLISHED
    principle_set.published_at = timezone.now()
    principle_set.save(update_fields=["status", "published_at"])
    return principle_set


@transaction.atomic
def fork_principle_set(
    *, principle_set: PrincipleSet, created_by: User | None = None
) -> PrincipleSet:
    """A new draft version of the same name whose parent is ``principle_set``; keys are kept."""
    latest = (
        PrincipleSet.objects.select_for_update()
        .filter(name=principle_set.name)
        .order_by("-version")
        .first()
    )
    fork = PrincipleSet.objects.create(
        name=principle_set.name,
        version=latest.version + 1,
        parent=principle_set,
        description=principle_set.description,
        source=principle_set.source,
        created_by=created_by,
    )
    Principle.objects.bulk_create(
        Principle(
            principle_set=fork,
            key=p.key,
            title=p.title,
            text=p.text,
            section=p.section,
            kind=p.kind,
            authority=p.authority,
            declared_priority=p.declared_priority,
            position=p.position,
        )
        for p in principle_set.principles.all()
    )
    return fork


# ---------------------------------------------------------------- users


@transaction.atomic
def create_user(
    *,
    username: str,
    password: str | None,
    role: str = AnnotatorProfile.Role.ANNOTATOR,
    kind: str = AnnotatorProfile.Kind.HUMAN,
    model_ref: str = "",
    email: str = "",
) -> User:
    """A user with its profile. ``password=None`` makes an account that cannot log in."""
    user = User(username=username, email=email, is_staff=role == AnnotatorProfile.Role.ADMIN)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    user.profile, _ = AnnotatorProfile.objects.update_or_create(
        user=user, defaults={"role": role, "kind": kind, "model_ref": model_ref}
    )  # refresh the cached profile: the post_save signal cached a default one
    return user


def get_or_create_model_annotator(*, name: str, model_ref: str = "") -> User:
    """The user that stands for an algorithmic annotator (reward model, LLM judge, policy)."""
    user = User.objects.filter(username=name).select_related("profile").first()
    if user is None:
        return create_user(
            username=name,
            password=None,
            role=AnnotatorProfile.Role.VIEWER,
            kind=AnnotatorProfile.Kind.MODEL,
            model_ref=model_ref or f"external:{name}",
        )
    return user


# ---------------------------------------------------------------- projects and tasks


@transaction.atomic
def create_project(
    *,
    name: str,
    slug: str,
    principle_set: PrincipleSet,
    created_by: User | None = None,
    **settings: object,
) -> Project:
    if not principle_set.is_published:
        raise DomainError("a project must use a published principle set")
    project = Project(
        name=name, slug=slug, principle_set=principle_set, created_by=created_by, **settings
    )
    project.full_clean()
    project.save()
    return project


@transaction.atomic
def update_project(*, project: Project, **changes: object) -> Project:
    """Change a project's settings; its slug and principle-set version are fixed at creation."""
    fixed = {"slug", "principle_set"} & set(changes)
    if fixed:
        raise DomainError(f"cannot change {', '.join(sorted(fixed))} of a project")
    for name, value in changes.items():
        setattr(project, name, value)
    project.full_clean()
    project.save(update_fields=list(changes))
    return project


def task_kind_for(spec: PromptSpec) -> str:
    if spec.kind:
        return spec.kind
    count = len(spec.responses)
    if count == 0:
        return Task.Kind.DEMONSTRATE
    if count == 1:
        return Task.Kind.RATE
    return Task.Kind.COMPARE if count == 2 else Task.Kind.RANK


@transaction.atomic
def create_tasks(
    *,
    project: Project,
    specs: Iterable[PromptSpec],
    batch_size: int | None = None,
    on_batch: Callable[[list[PromptSpec], list[int], list[list[int]]], None] | None = None,
) -> int:
    """Store prompts, responses and one task per prompt in bulk; returns the task count.

    ``on_batch(specs, task_ids, response_ids)`` runs after each batch (response ids per task in
    position order), e.g. to attach imported judgments in the same transaction. ``specs`` may be
    lazy (a file being parsed); on PostgreSQL a worker thread advances it, so it must not use
    the database."""
    batch_size = batch_size or (5000 if connection.vendor == "postgresql" else 2000)
    batches = _batches(specs, batch_size)
    if connection.vendor == "postgresql":
        total = task_copy.copy_tasks(project, batches, task_kind_for, on_batch)
    else:
        total = sum(_create_task_batch(project, batch, on_batch) for batch in batches)
    Project.objects.filter(pk=project.pk).update(task_count=project.tasks.count())
    return total


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _create_task_batch(project: Project, specs: list[PromptSpec], on_batch=None) -> int:
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, messages=s.messages, metadata=s.metadata, external_id=s.external_id)
        for s in specs
    )
    responses = Response.objects.bulk_create(
        Response(prompt=prompt, text=r.text, source=r.source, generation_params=r.generation_params)
        for prompt, spec in zip(prompts, specs, strict=True)
        for r in spec.responses
    )
    tasks = Task.objects.bulk_create(
        Task(
            project=project, prompt=prompt, kind=task_kind_for(spec), submitted_count=spec.submitted
        )
        for prompt, spec in zip(prompts, specs, strict=True)
    )
    links = []
    response_iter = iter(responses)
    for task, spec in zip(tasks, specs, strict=True):
        for position, response_spec in enumerate(spec.responses):
            links.append(
                TaskResponse(
                    task=task,
                    response=next(response_iter),
                    position=position,
                    source_label=response_spec.label,
                )
            )
    TaskResponse.objects.bulk_create(links)
    if on_batch is not None:
        ids = iter(r.pk for r in responses)
        on_batch(
            specs,
            [t.pk for t in tasks],
            [[next(ids) for _ in spec.responses] for spec in specs],
        )
    return len(tasks)


def refresh_project_counts(*, project_id: int) -> Project:
    """Recompute a project's cached counts (run by a Celery worker)."""
    counts = Task.objects.filter(project_id=project_id).aggregate(
        tasks=Count("id"),
        complete=Count(
            "id",
            filter=Q(
                submitted_count__gte=Project.objects.filter(pk=project_id).values(
                    "annotations_per_task"
                )[:1]
            ),
        ),
    )
    judgments = Judgment.objects.filter(task__project_id=project_id).count()
    Project.objects.filter(pk=project_id).update(
        task_count=counts["tasks"],
        completed_task_count=counts["complete"],
        judgment_count=judgments,
        counts_refreshed_at=timezone.now(),
    )
    return Project.objects.get(pk=project_id)


# ---- assignment engine
#
# next_task / skip_task / submit_judgment / edit_judgment / create_demonstration.
#
# Race-freedom. Every transaction that adds a lease to a task, or turns an expired lease into
# a submission, first locks the task row (``FOR NO KEY UPDATE``): a lease takes it with
# ``SKIP LOCKED`` and then re-counts the task's live leases in a *fresh* statement (under READ
# COMMITTED a new statement sees every commit made before the lock was granted), so the count
# cannot change under it and a task is never handed beyond ``annotations_per_task``. A
# (task, annotator) pair is unique in the table, so nobody gets a task twice. On SQLite every
# write transaction is ``BEGIN IMMEDIATE`` (settings), so leases are serialized outright and the
# same code is correct there. Locks are always taken task → assignment, never the other way.
#
# A lease is "live" while ``state == leased and leased_until > now``; a lease past its time
# counts as expired wherever it is read (``expire_leases`` only tidies the state column). An
# expired lease frees its slot for others; the annotator who held it may get it back (the row
# is reused), and may still submit it while the task has room. A skipped task is re-offered to
# others only. Gold tasks are drawn with probability ``project.gold_ratio``; every annotator may
# see each gold task once (gold is not capped by the overlap).
#
# Two implementations of the same rules: the ORM one (SQLite, any database) and, because the
# workspace's two requests per judgment must stay cheap, a few prepared statements on
# PostgreSQL (``_next_task_postgres``, ``_submit_postgres``). The test suite runs on both.

LEASED = Assignment.State.LEASED
SUBMITTED = Assignment.State.SUBMITTED
SKIPPED = Assignment.State.SKIPPED
EXPIRED = Assignment.State.EXPIRED
NOT_APPLICABLE_VALUES = frozenset({"n/a", "na", "not_applicable", ""})
LEASE_CANDIDATES = 1  # task rows locked per try: each lock writes the row and makes others skip it
LEASE_TRIES = 8
MAX_TEXT = 20_000

# Random source for gold draws and display order (tests may replace it with a seeded one).
rng = random.Random()

# Post-commit hooks: webhooks, metric refreshes. Each is called as ``hook(event, payload)`` after
# the transaction that produced the event commits; a failing hook is logged, never raised.
# Events: "judgment.created", "judgment.updated", "demonstration.created", "assignment.skipped";
# payloads carry ids only (``judgment_id`` / ``demonstration_id`` / ``assignment_id``,
# ``task_id``, ``project_id``, ``annotator_id``).
ANNOTATION_EVENT_HOOKS: list[Callable[[str, dict], None]] = []


def _emit(event: str, **payload: object) -> None:
    """The one place the workspace announces a change (add webhook / metrics calls here)."""
    for hook in tuple(ANNOTATION_EVENT_HOOKS):
        run = functools.partial(hook, event, dict(payload))
        # on_commit(robust=True) names the callable when it logs a failure: give it a name.
        run.__qualname__ = f"{getattr(hook, '__qualname__', repr(hook))}({event!r})"
        transaction.on_commit(run, robust=True)


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


# PostgreSQL: the same engine in three plain statements (the ORM version costs several ms of
# query compilation per lease). 1. the live lease, if any (outside any transaction: a read);
# then, in one transaction per try, 2. lock up to LEASE_CANDIDATES open
# tasks, best first, SKIP LOCKED; 3. one INSERT … SELECT that re-checks those locked tasks in
# a fresh snapshot and leases the first that still has room (ON CONFLICT revives the
# annotator's own expired lease on the same row, keeping its display order). The overlap and
# ``is_active`` are read from the project row, never from the (possibly cached) ``Project``.
# The lease comes back with its task content (``selectors.TASK_CONTENT_COLUMNS``): the page
# needs no further query.
_A = Assignment._meta.db_table
_T = Task._meta.db_table
_P = Project._meta.db_table
_TR = TaskResponse._meta.db_table
_R = Response._meta.db_table
_J = Judgment._meta.db_table
_ASSIGNMENT_COLUMNS = (
    "id",
    "task_id",
    "annotator_id",
    "state",
    "display_order",
    "leased_at",
    "leased_until",
    "submitted_at",
    "skip_reason",
)
_PG_LIVE = f"""
    SELECT {", ".join(f"a.{c}" for c in _ASSIGNMENT_COLUMNS)}, {selectors.TASK_CONTENT_COLUMNS}
    FROM {_A} a JOIN {selectors.TASK_CONTENT_FROM} ON t.id = a.task_id
    WHERE a.annotator_id = %(me)s AND t.project_id = %(project)s
      AND a.state = 'leased' AND a.leased_until > %(now)s
    ORDER BY a.leased_at, a.id LIMIT 1"""
_PG_BLOCKED = f"""EXISTS (SELECT 1 FROM {_A} m WHERE m.task_id = t.id AND m.annotator_id = %(me)s
      AND (m.state IN ('submitted', 'skipped')
           OR (m.state = 'leased' AND m.leased_until > %(now)s)))"""
_PG_LIVE_OTHERS = f"""(SELECT count(*) FROM {_A} l WHERE l.task_id = t.id AND l.state = 'leased'
      AND l.leased_until > %(now)s AND l.annotator_id <> %(me)s)"""
_PG_HAS_ROOM = f"t.submitted_count + {_PG_LIVE_OTHERS} < p.annotations_per_task"
_PG_CANDIDATES = f"""
    SELECT t.id FROM {_T} t JOIN {_P} p ON p.id = t.project_id
    WHERE t.project_id = %(project)s AND p.is_active AND t.is_gold = %(gold)s {{room}}
      AND NOT {_PG_BLOCKED}
      AND NOT EXISTS (SELECT 1 FROM {_J} j WHERE j.task_id = t.id AND j.annotator_id = %(me)s)
      AND NOT EXISTS (SELECT 1 FROM {_TR} tr JOIN {_R} r ON r.id = tr.response_id
                      WHERE tr.task_id = t.id AND r.author_id = %(me)s)
      AND NOT (t.id = ANY(%(rejected)s::bigint[]))
    ORDER BY {{order}} LIMIT {{limit}} FOR NO KEY UPDATE OF t {{skip}}"""
_PG_GRANT = f"""
    WITH granted AS (
        INSERT INTO {_A} (task_id, annotator_id, state, display_order, leased_at, leased_until,
                          submitted_at, skip_reason)
        SELECT t.id, %(me)s, 'leased',
               (SELECT coalesce(jsonb_agg(tr.response_id ORDER BY {{shuffle}}), '[]'::jsonb)
                FROM {_TR} tr WHERE tr.task_id = t.id),
               %(now)s, %(until)s, NULL, ''
        FROM {_T} t JOIN {_P} p ON p.id = t.project_id
        WHERE t.id = ANY(%(ids)s::bigint[]) AND p.is_active AND NOT {_PG_BLOCKED} {{room}}
        ORDER BY array_position(%(ids)s::bigint[], t.id) LIMIT 1
        ON CONFLICT (task_id, annotator_id) DO UPDATE
            SET state = 'leased', leased_at = EXCLUDED.leased_at,
                leased_until = EXCLUDED.leased_until
            WHERE {_A}.state IN ('leased', 'expired') AND {_A}.leased_until <= %(now)s
        RETURNING {", ".join(_ASSIGNMENT_COLUMNS)}
    )
    SELECT {", ".join(f"a.{c}" for c in _ASSIGNMENT_COLUMNS)}, {selectors.TASK_CONTENT_COLUMNS}
    FROM granted a JOIN {selectors.TASK_CONTENT_FROM} ON t.id = a.task_id"""


_pg_cursor = selectors.pg_cursor  # statements prepared once per connection


def _assignment_from_row(row: Sequence) -> Assignment:
    values = list(row)
    order = values[4]
    values[4] = json.loads(order) if isinstance(order, str | bytes) else order
    return Assignment.from_db(connection.alias, list(_ASSIGNMENT_COLUMNS), values)


def _lease_from_row(row: Sequence, project: Project) -> Assignment:
    """A lease statement's row: the assignment, with its task content attached."""
    width = len(_ASSIGNMENT_COLUMNS)
    return selectors.attach_task(_assignment_from_row(row[:width]), row[width:], project)


class _NoLease(Exception):
    """A lease try that leased nothing: roll it back, releasing its row locks."""


def _next_task_postgres(annotator: User, project: Project, pools: list[bool], now):
    params = {
        "me": annotator.pk,
        "project": project.pk,
        "now": now,
        "until": now + timedelta(seconds=project.lease_seconds),
    }
    with _pg_cursor() as cursor:
        cursor.execute(_PG_LIVE, params, prepare=True)  # a read: no transaction needed
        row = cursor.fetchone()
    if row is not None:
        return _lease_from_row(row, project)
    shuffle = "random()" if project.randomize_positions else "tr.position"
    for gold in pools:
        room = "" if gold else f"AND t.submitted_count < p.annotations_per_task AND {_PG_HAS_ROOM}"
        order = "t.id" if gold else "t.submitted_count, t.id"
        grant = _PG_GRANT.format(shuffle=shuffle, room="" if gold else f"AND {_PG_HAS_ROOM}")
        rejected: list[int] = []
        for _ in range(LEASE_TRIES):
            # Each try is its own transaction (a savepoint inside a caller's): one that leases
            # nothing rolls back, releasing its row locks, so a transaction that waits below
            # never holds locks another one waits for.
            query = {**params, "gold": gold, "rejected": rejected}
            try:
                with transaction.atomic(), _pg_cursor() as cursor:
                    candidates = _PG_CANDIDATES.format(
                        room=room, order=order, limit=LEASE_CANDIDATES, skip="SKIP LOCKED"
                    )
                    cursor.execute(candidates, query, prepare=True)
                    ids = [r[0] for r in cursor.fetchall()]
                    if not ids:  # nothing free: wait for a row locked an instant by another
                        waiting = _PG_CANDIDATES.format(room=room, order=order, limit=1, skip="")
                        cursor.execute(waiting, query, prepare=True)
                        ids = [r[0] for r in cursor.fetchall()]
                        if not ids:
                            break
                    cursor.execute(grant, {**params, "ids": ids}, prepare=True)
                    row = cursor.fetchone()
                    if row is None:
                        raise _NoLease
                    return _lease_from_row(row, project)
            except _NoLease:
                rejected.extend(ids)
    return None


def next_task(*, annotator: User, project: Project) -> Assignment | None:
    """The annotator's live lease in ``project`` if any, else a new lease, else ``None``.

    ``project`` may be a few seconds old (``selectors.cached_workspace_project``): the overlap
    and ``is_active`` are read from the database. On PostgreSQL the lease comes with its task
    content attached (see ``selectors.with_task``)."""
    if not project.is_active:
        return None
    if connection.vendor == "postgresql":
        pools = [False]
        if project.gold_ratio > 0 and rng.random() < project.gold_ratio:
            pools = [True, False]
        return _next_task_postgres(annotator, project, pools, timezone.now())
    with transaction.atomic():
        project = Project.objects.get(pk=project.pk)  # the overlap as stored now
        if not project.is_active:
            return None
        now = timezone.now()
        live = (
            Assignment.objects.filter(
                annotator=annotator, task__project=project, state=LEASED, leased_until__gt=now
            )
            .order_by("leased_at", "id")
            .first()
        )
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
    _emit(
        "assignment.skipped",
        assignment_id=locked.pk,
        task_id=locked.task_id,
        annotator_id=annotator.pk,
    )
    return locked


@dataclass(frozen=True)
class CleanJudgment:
    """A judgment's input after validation, in response ids and principle objects."""

    ordering: list[list[int]]
    strength: int
    verdicts: list[tuple[Principle, str, int | None]]
    decisive: list[Principle]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
            if not _is_int(rid):
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
    if not _is_int(strength) or not 0 <= strength <= 3:
        raise DomainError("strength must be 0 (none), 1 (slightly), 2 (clearly) or 3 (much better)")
    if strength and len(buckets) == 1:
        raise DomainError("a tie has no strength; send strength 0")
    if strength and len(valid) > 2:
        raise DomainError("strength applies to pairwise comparisons only; send strength 0")

    principles = selectors.project_principles(project).by_key
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
        if value is None or (isinstance(value, str) and value.lower() in NOT_APPLICABLE_VALUES):
            row = (principle, PrincipleVerdict.Verdict.NOT_APPLICABLE, None)
        elif value == "tie":
            row = (principle, PrincipleVerdict.Verdict.TIE, None)
        elif _is_int(value) and value in valid:
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
    if confidence is not None and (not _is_int(confidence) or not 1 <= confidence <= 5):
        raise DomainError("confidence must be 1..5 or empty")
    if time_spent_ms is not None and (not _is_int(time_spent_ms) or time_spent_ms < 0):
        raise DomainError("time_spent_ms must be a non-negative integer")
    return CleanJudgment(ordering=buckets, strength=strength, verdicts=rows, decisive=decisive_rows)


def _store_principles(judgment: Judgment, clean: CleanJudgment) -> None:
    PrincipleVerdict.objects.bulk_create(
        PrincipleVerdict(
            judgment=judgment, principle=principle, verdict=verdict, preferred_response_id=rid
        )
        for principle, verdict, rid in clean.verdicts
    )
    if clean.decisive:
        through = Judgment.decisive_principles.through
        through.objects.bulk_create(
            through(judgment_id=judgment.pk, principle_id=p.pk) for p in clean.decisive
        )


def _clean_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if not isinstance(key, str) or len(key) > 100:
        raise DomainError("idempotency_key must be a string of at most 100 characters")
    return key


def _replay(model, key: str | None, *, annotator: User, **same: object):
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


def _lock_task(task_id: int) -> Task:
    return (
        Task.objects.select_for_update(no_key=True, of=("self",))
        .select_related("project__principle_set")
        .get(pk=task_id)
    )


def _claim_lease(locked: Assignment, task: Task, now, *, submitted: int) -> None:
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


def _finish_assignment(locked: Assignment, task: Task, now) -> None:
    Assignment.objects.filter(pk=locked.pk).update(state=SUBMITTED, submitted_at=now)
    Task.objects.filter(pk=task.pk).update(submitted_count=F("submitted_count") + 1)
    locked.state, locked.submitted_at = SUBMITTED, now


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
    a response). Idempotent on ``idempotency_key``: a retry returns the stored judgment.
    """
    key = _clean_key(idempotency_key)
    if assignment.annotator_id != annotator.pk:
        raise NotYourAssignmentError("this task is leased to another annotator")
    task = _task_with_project(assignment)
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
    if connection.vendor == "postgresql":
        judgment = _submit_postgres(assignment, annotator, task, clean, fields)
        if judgment is not None:
            return judgment
    try:
        with transaction.atomic():
            # Counting the submission first takes the task row lock that every lease takes.
            Task.objects.filter(pk=task.pk).update(submitted_count=F("submitted_count") + 1)
            now = timezone.now()
            claimed = Assignment.objects.filter(
                pk=assignment.pk, annotator_id=annotator.pk, state=LEASED, leased_until__gt=now
            ).update(state=SUBMITTED, submitted_at=now)
            if not claimed:  # a retry, an expired lease, or not a lease at all
                _claim_slowly(assignment, annotator, task, key, now)
            judgment = Judgment.objects.create(
                task=task,
                annotator=annotator,
                assignment_id=assignment.pk,
                ordering=clean.ordering,
                strength=clean.strength,
                both_bad=bool(both_bad),
                rationale=rationale or "",
                confidence=confidence,
                time_spent_ms=time_spent_ms,
                discretion=bool(discretion),
                discretion_note=(discretion_note or "") if discretion else "",
                idempotency_key=key,
                origin=origin,
            )
            _store_principles(judgment, clean)
            if both_bad and task.project.both_bad_creates_demonstration:
                _follow_up_demonstration(judgment, task)
            _emit(
                "judgment.created",
                judgment_id=judgment.pk,
                task_id=task.pk,
                project_id=task.project_id,
                annotator_id=annotator.pk,
            )
    except _Replay as replay:
        return replay.judgment
    except IntegrityError:
        # Two retries with one key raced past the checks: the loser returns the winner's row.
        replay = _replay(Judgment, key, annotator=annotator, assignment_id=assignment.pk)
        if replay is not None:
            return replay
        raise
    assignment.state, assignment.submitted_at = SUBMITTED, now
    return judgment


_PV = PrincipleVerdict._meta.db_table
_JD = Judgment.decisive_principles.through._meta.db_table
# One statement: lock the task row (the lock every lease takes, first, as everywhere), claim
# the live lease, count the submission only if the claim succeeded (the task row is already
# ours, so this update never waits), and insert the judgment, its verdicts and decisive
# principles. Nothing is written when the lease is not live.
_PG_SUBMIT = f"""
    WITH task AS (
        SELECT id FROM {_T} WHERE id = %(task)s FOR NO KEY UPDATE
    ), claim AS (
        UPDATE {_A} a SET state = 'submitted', submitted_at = %(now)s
        FROM task
        WHERE a.id = %(assignment)s AND a.task_id = task.id AND a.annotator_id = %(me)s
          AND a.state = 'leased' AND a.leased_until > %(now)s
        RETURNING a.id
    ), counted AS (
        UPDATE {_T} t SET submitted_count = t.submitted_count + 1
        FROM claim WHERE t.id = %(task)s
    ), judgment AS (
        INSERT INTO {_J} (task_id, annotator_id, assignment_id, ordering, strength, both_bad,
                          rationale, confidence, time_spent_ms, discretion, discretion_note,
                          idempotency_key, origin, created_at, updated_at)
        SELECT %(task)s, %(me)s, claim.id, %(ordering)s::jsonb, %(strength)s, %(both_bad)s,
               %(rationale)s, %(confidence)s, %(time_spent_ms)s, %(discretion)s,
               %(discretion_note)s, %(idempotency_key)s, %(origin)s, %(now)s, %(now)s
        FROM claim
        RETURNING id
    ), verdicts AS (
        INSERT INTO {_PV} (judgment_id, principle_id, verdict, preferred_response_id)
        SELECT judgment.id, v.principle, v.verdict, v.response
        FROM judgment, unnest(%(principles)s::bigint[], %(verdicts)s::text[],
                              %(responses)s::bigint[]) AS v(principle, verdict, response)
    ), decisive AS (
        INSERT INTO {_JD} (judgment_id, principle_id)
        SELECT judgment.id, d.principle
        FROM judgment, unnest(%(decisive)s::bigint[]) AS d(principle)
    )
    SELECT id FROM judgment"""


class _NoFastClaim(Exception):
    """The one-statement submit did not apply (roll back, take the general path)."""


def _submit_postgres(
    assignment: Assignment, annotator: User, task: Task, clean: CleanJudgment, fields: dict
) -> Judgment | None:
    """The common case in one statement (``_PG_SUBMIT``), atomic on its own: no transaction
    round trips unless a follow-up demonstration joins it, or a caller's transaction needs a
    savepoint so that a refused insert does not abort it. ``None`` when that does not apply (a
    retry, an expired lease, a reused key): the general path then decides, with the same
    rules."""
    now = timezone.now()
    params = {
        **fields,
        "task": task.pk,
        "assignment": assignment.pk,
        "me": annotator.pk,
        "now": now,
        "ordering": json.dumps(clean.ordering),
        "strength": clean.strength,
        "principles": [p.pk for p, _, _ in clean.verdicts],
        "verdicts": [str(v) for _, v, _ in clean.verdicts],
        "responses": [r for _, _, r in clean.verdicts],
        "decisive": [p.pk for p in clean.decisive],
    }
    follow_up = fields["both_bad"] and task.project.both_bad_creates_demonstration
    atomic = transaction.atomic() if follow_up or connection.in_atomic_block else nullcontext()
    try:
        with atomic, _pg_cursor() as cursor:
            cursor.execute(_PG_SUBMIT, params, prepare=True)
            row = cursor.fetchone()
            if row is None:
                raise _NoFastClaim
            judgment = Judgment(
                pk=row[0],
                task=task,
                annotator=annotator,
                assignment_id=assignment.pk,
                ordering=clean.ordering,
                strength=clean.strength,
                created_at=now,
                updated_at=now,
                **fields,
            )
            judgment._state.adding = False
            judgment._state.db = connection.alias
            if follow_up:
                _follow_up_demonstration(judgment, task)
            _emit(
                "judgment.created",
                judgment_id=judgment.pk,
                task_id=task.pk,
                project_id=task.project_id,
                annotator_id=annotator.pk,
            )
    except (_NoFastClaim, IntegrityError):
        return None
    assignment.state, assignment.submitted_at = SUBMITTED, now
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
    replay = _replay(Judgment, key, annotator=annotator, assignment_id=locked.pk)
    if replay is not None:
        raise _Replay(replay)
    # the count already includes this submission (incremented above)
    submitted = Task.objects.filter(pk=task.pk).values_list("submitted_count", flat=True).get()
    _claim_lease(locked, task, now, submitted=submitted - 1)
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
        _emit(
            "judgment.updated",
            judgment_id=locked.pk,
            task_id=task.pk,
            project_id=task.project_id,
            annotator_id=annotator.pk,
        )
    return locked


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
    key = _clean_key(idempotency_key)
    replay = _replay(Demonstration, key, annotator=annotator, task_id=task.pk)
    if replay is not None:
        return replay
    if not isinstance(text, str) or not text.strip():
        raise DomainError("a demonstration needs text")
    if len(text) > 5 * MAX_TEXT:
        raise DomainError(f"a demonstration is limited to {5 * MAX_TEXT} characters")
    if time_spent_ms is not None and (not _is_int(time_spent_ms) or time_spent_ms < 0):
        raise DomainError("time_spent_ms must be a non-negative integer")
    try:
        with transaction.atomic():
            locked_task = _lock_task(task.pk)
            assignment = (
                Assignment.objects.select_for_update()
                .filter(task=locked_task, annotator=annotator)
                .first()
            )
            replay = _replay(Demonstration, key, annotator=annotator, task_id=task.pk)
            if replay is not None:
                return replay
            now = timezone.now()
            if locked_task.kind == Task.Kind.DEMONSTRATE:
                if assignment is None:
                    raise NotYourAssignmentError("this demonstrate task is not leased to you")
                _claim_lease(assignment, locked_task, now, submitted=locked_task.submitted_count)
            elif assignment is None:
                raise DomainError("write demonstrations for tasks you have worked on")
            response_ids = set(
                TaskResponse.objects.filter(task=locked_task).values_list("response_id", flat=True)
            )
            if based_on is not None and based_on.pk not in response_ids:
                raise DomainError("based_on must be one of this task's responses")
            principles = selectors.project_principles(locked_task.project).by_key
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
                _finish_assignment(assignment, locked_task, now)
            _emit(
                "demonstration.created",
                demonstration_id=demonstration.pk,
                task_id=locked_task.pk,
                project_id=locked_task.project_id,
                annotator_id=annotator.pk,
            )
    except IntegrityError:
        replay = _replay(Demonstration, key, annotator=annotator, task_id=task.pk)
        if replay is not None:
            return replay
        raise
    return demonstration


# ---- review


def flag_judgment(
    *, judgment: Judgment, by: User, flagged: bool = True, reason: str = ""
) -> Judgment:
    """Flag a doubtful judgment (snapshots with ``exclude_flagged`` leave it out) or clear the
    flag. Staff only; the reason, who and when are recorded (cleared with the flag)."""
    if not is_staff_role(by):
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
    return judgment
