"""The workspace's PostgreSQL fast path: every SQL statement of leasing, submitting and the
workspace's reads, beside their ORM path (``leasing``, ``judging``, ``selectors``), which
``enabled()`` chooses between. Both paths follow the same rules and are run by the same tests on
both databases.

Locking rules (both paths):

- The task row is the one lock every writer takes first: a lease locks the candidate task
  (``FOR NO KEY UPDATE``, ``SKIP LOCKED`` so annotators spread), a submit locks the judged task
  before it claims its lease and counts the submission. One lock order, so no deadlocks.
- A lease try that leases nothing rolls back at once, releasing its row locks: a transaction
  never waits while it holds a lock another one waits for.
- What must never be stale (the overlap ``annotations_per_task``, ``is_active``) is read from
  the project row by the statements themselves, never from a cached ``Project``.
- Statements run on Django's own connection (same transaction), prepared once per connection
  (``prepared_cursor()``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotation.models import (
    Assignment,
    Judgment,
    PrincipleSet,
    PrincipleVerdict,
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)

if TYPE_CHECKING:
    from annotation.workspace.judging import CleanJudgment


User = get_user_model()


def enabled() -> bool:
    """Whether the default database is PostgreSQL, where these statements replace the ORM's."""
    return connection.vendor == "postgresql"


@contextmanager
def prepared_cursor():
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


def _table(model) -> str:
    return model._meta.db_table


def _select(model, alias: str) -> str:
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


def instance(model, values: list):
    """A model instance from raw column values, with the fields' own database converters."""
    fields = model._meta.concrete_fields
    converted = [
        f.from_db_value(v, None, connection)
        if isinstance(v, str) and hasattr(f, "from_db_value")
        else v
        for f, v in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def raw_rows(sql: str, params: dict, *models) -> list | None:
    """The first row of ``sql`` split into one instance per model (``None`` if no row)."""
    with prepared_cursor() as cursor:
        cursor.execute(sql, params, prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    out, start = [], 0
    for model in models:
        width = len(model._meta.concrete_fields)
        out.append(instance(model, list(row[start : start + width])))
        start += width
    return out


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
    """Attach the task content of ``row`` (``TASK_CONTENT_COLUMNS``' values) and ``project``:
    ``assignment.task`` (with ``prompt`` and ``project``) and ``assignment.response_texts``."""
    width = len(Task._meta.concrete_fields)
    task = instance(Task, list(row[:width]))
    task.prompt = instance(Prompt, list(row[width:-1]))
    texts = row[-1] or {}
    texts = json.loads(texts) if isinstance(texts, str) else texts
    assignment.response_texts = {int(k): v for k, v in texts.items()}
    task.project = project
    assignment.task = task
    return assignment


def with_task(assignment: Assignment, project: Project) -> Assignment:
    """``selectors.with_task``'s one statement."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT {TASK_CONTENT_COLUMNS} FROM {TASK_CONTENT_FROM} WHERE t.id = %(task)s",
            {"task": assignment.task_id},
            prepare=True,
        )
        row = cursor.fetchone()
    return attach_task(assignment, row, project)


def workspace_project(*, slug: str | None = None, pk: int | None = None) -> Project | None:
    """``selectors.workspace_project``: the active project (by slug or by id) with its principle
    set, or ``None``."""
    rows = raw_rows(
        f"SELECT {_select(Project, 'p')}, {_select(PrincipleSet, 's')} FROM {_table(Project)} p "
        f"JOIN {_table(PrincipleSet)} s ON s.id = p.principle_set_id "
        f"WHERE p.{'slug' if pk is None else 'id'} = %(key)s AND p.is_active",
        {"key": slug if pk is None else pk},
        Project,
        PrincipleSet,
    )
    if rows is None:
        return None
    project, principle_set = rows
    project.principle_set = principle_set
    return project


def assignment_for_annotator(
    annotator_id: int, assignment_id: int, with_prompt: bool
) -> Assignment | None:
    """``selectors.assignment_for_annotator`` in one statement, or ``None``."""
    models = [Assignment, Task, Project, PrincipleSet] + ([Prompt] if with_prompt else [])
    columns = ", ".join(
        _select(m, a) for m, a in zip(models, ["a", "t", "p", "s", "q"], strict=False)
    )
    rows = raw_rows(
        f"SELECT {columns} FROM {_table(Assignment)} a "
        f"JOIN {_table(Task)} t ON t.id = a.task_id "
        f"JOIN {_table(Project)} p ON p.id = t.project_id "
        f"JOIN {_table(PrincipleSet)} s ON s.id = p.principle_set_id "
        + (f"JOIN {_table(Prompt)} q ON q.id = t.prompt_id " if with_prompt else "")
        + "WHERE a.id = %(id)s AND a.annotator_id = %(me)s",
        {"id": assignment_id, "me": annotator_id},
        *models,
    )
    if rows is None:
        return None
    assignment, task, project, principle_set, *prompt = rows
    project.principle_set = principle_set
    task.project = project
    if prompt:
        task.prompt = prompt[0]
    assignment.task = task
    return assignment


# PostgreSQL: the same engine in three plain statements (the ORM version costs several ms of
# query compilation per lease). 1. the live lease, if any (outside any transaction: a read);
# then, in one transaction per try, 2. lock up to LEASE_CANDIDATES open
# tasks, best first, SKIP LOCKED; 3. one INSERT … SELECT that re-checks those locked tasks in
# a fresh snapshot and leases the first that still has room (ON CONFLICT revives the
# annotator's own expired lease on the same row, keeping its display order). The overlap and
# ``is_active`` are read from the project row, never from the (possibly cached) ``Project``.
# The lease comes back with its task content (``TASK_CONTENT_COLUMNS``): the page
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
    SELECT {", ".join(f"a.{c}" for c in _ASSIGNMENT_COLUMNS)}, {TASK_CONTENT_COLUMNS}
    FROM {_A} a JOIN {TASK_CONTENT_FROM} ON t.id = a.task_id
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
    SELECT {", ".join(f"a.{c}" for c in _ASSIGNMENT_COLUMNS)}, {TASK_CONTENT_COLUMNS}
    FROM granted a JOIN {TASK_CONTENT_FROM} ON t.id = a.task_id"""


def _assignment_from_row(row: Sequence) -> Assignment:
    values = list(row)
    order = values[4]
    values[4] = json.loads(order) if isinstance(order, str | bytes) else order
    return Assignment.from_db(connection.alias, list(_ASSIGNMENT_COLUMNS), values)


def _lease_from_row(row: Sequence, project: Project) -> Assignment:
    """A lease statement's row: the assignment, with its task content attached."""
    width = len(_ASSIGNMENT_COLUMNS)
    return attach_task(_assignment_from_row(row[:width]), row[width:], project)


class _NoLease(Exception):
    """A lease try that leased nothing: roll it back, releasing its row locks."""


def live_lease(annotator: User, project: Project, now) -> Assignment | None:
    """The annotator's live lease in ``project`` with its task content, or ``None`` (a read)."""
    params = {"me": annotator.pk, "project": project.pk, "now": now}
    with prepared_cursor() as cursor:
        cursor.execute(_PG_LIVE, params, prepare=True)  # a read: no transaction needed
        row = cursor.fetchone()
    return None if row is None else _lease_from_row(row, project)


def next_task(
    annotator: User, project: Project, pools: list[bool], now, *, tries: int, candidates: int
) -> Assignment | None:
    """``leasing.next_task`` in plain statements (see the comment above)."""
    params = {
        "me": annotator.pk,
        "project": project.pk,
        "now": now,
        "until": now + timedelta(seconds=project.lease_seconds),
    }
    live = live_lease(annotator, project, now)
    if live is not None:
        return live
    shuffle = "random()" if project.randomize_positions else "tr.position"
    for gold in pools:
        room = "" if gold else f"AND t.submitted_count < p.annotations_per_task AND {_PG_HAS_ROOM}"
        order = "t.id" if gold else "t.submitted_count, t.id"
        grant = _PG_GRANT.format(shuffle=shuffle, room="" if gold else f"AND {_PG_HAS_ROOM}")
        rejected: list[int] = []
        for _ in range(tries):
            # Each try is its own transaction (a savepoint inside a caller's): one that leases
            # nothing rolls back, releasing its row locks, so a transaction that waits below
            # never holds locks another one waits for.
            query = {**params, "gold": gold, "rejected": rejected}
            try:
                with transaction.atomic(), prepared_cursor() as cursor:
                    sql = _PG_CANDIDATES.format(
                        room=room, order=order, limit=candidates, skip="SKIP LOCKED"
                    )
                    cursor.execute(sql, query, prepare=True)
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


_PV = PrincipleVerdict._meta.db_table


_JD = Judgment.decisive_principles.through._meta.db_table


# One statement: lock the task row (the lock every lease takes, first, as everywhere), claim
# the live lease, count the submission only if the claim succeeded (the task row is already
# ours, so this update never waits), and insert the judgment, its verdicts and decisive
# principles. Nothing is written when the lease is not live or the project was deactivated
# (read from the project row: the general path then says which).
_PG_SUBMIT = f"""
    WITH task AS (
        SELECT t.id FROM {_T} t JOIN {_P} p ON p.id = t.project_id
        WHERE t.id = %(task)s AND p.is_active FOR NO KEY UPDATE OF t
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


def submit(
    assignment: Assignment,
    annotator: User,
    task: Task,
    clean: CleanJudgment,
    fields: dict,
    *,
    follow_up: bool,
    then: Callable[[Judgment], None],
) -> Judgment | None:
    """The common case in one statement (``_PG_SUBMIT``), atomic on its own: no transaction
    round trips unless a follow-up demonstration joins it, or a caller's transaction needs a
    savepoint so that a refused insert does not abort it. ``then(judgment)`` runs in the same
    transaction (a follow-up demonstration, the event). ``None`` when that does not apply (a
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
    atomic = transaction.atomic() if follow_up or connection.in_atomic_block else nullcontext()
    try:
        with atomic, prepared_cursor() as cursor:
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
            then(judgment)
    except (_NoFastClaim, IntegrityError):
        return None
    assignment.state, assignment.submitted_at = Assignment.State.SUBMITTED, now
    return judgment


def autovacuum_is_off(connection) -> bool:
    """Whether ``connection`` is to a PostgreSQL server with autovacuum off (``checks``)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0] == "off"
