"""The datasets' PostgreSQL fast path: the bulk path of ``bulk.create_tasks``: ``COPY … FROM
STDIN`` into the four tables of a task import (prompts, responses, tasks, task ↔ response
links), ~8× faster than ``bulk_create``. ``copy_rows`` writes rows that reference existing
records (the judgments of a labelled import) the same way, with their foreign keys checked as
usual.

Ids are drawn from the tables' sequences first, so rows can reference each other and
``on_batch`` gets them. Columns the import does not set take their field defaults
(``auto_now*`` → now).

Foreign-key triggers are switched off for the COPYs where the database role may do so.
PostgreSQL checks a foreign key with one trigger call per row (a lookup plus a row lock, ~9 per
compare task): over half of the server's work in an import. Here every reference a copied row
holds is known to be valid when it is written: the project's id, with the project row locked
``FOR KEY SHARE`` first (the lock each row's check would take), or the id of a row the same
batch writes, drawn from its sequence; every other foreign key column is NULL (``_copy_rows``
refuses a non-NULL default). So, as ``pg_restore --disable-triggers`` does, the COPYs run with
``session_replication_role = replica`` (transaction-local; what ``on_batch`` writes is checked
as usual). The tests prove the copied rows satisfy every foreign key.

That needs a superuser or, on PostgreSQL ≥ 15, ``GRANT SET ON PARAMETER
session_replication_role TO <role>``. Without it the triggers run, deferred, and each batch's
checks are forced right after its COPYs.

Python and PostgreSQL (on another core) take turns less: a worker thread pulls the next batch
from ``specs`` (the parsing of an import file) while this thread copies the current one, whose
COPYs spend much of their time waiting on the server with the GIL released (measured: ~10 %
faster than parsing between the COPYs). The worker must not touch the database (connections
belong to threads).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import orjson
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection
from django.utils import timezone
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from annotation.datasets.decoding import NA_CODE, TIE_CODE, Lookups, judgment_records
from annotation.datasets.exports.records import JudgmentRecord
from annotation.datasets.filters import SnapshotFilters
from annotation.models import (
    AnnotatorProfile,
    Judgment,
    PrincipleVerdict,
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)

if TYPE_CHECKING:
    from annotation.specs import PromptSpec

COPIED = (Prompt, Response, Task, TaskResponse)
OnBatch = Callable[[list, list[int], list[list[int]]], None]


def copy_tasks(
    project: Project, batches: Iterator[list[PromptSpec]], kind_for, on_batch: OnBatch | None
) -> int:
    """Write every batch (one transaction: the caller's); returns the task count."""
    total = 0
    with connection.cursor() as cursor:
        # the lock each row's foreign-key check on the project would take
        cursor.execute(
            f"SELECT 1 FROM {Project._meta.db_table} WHERE id = %s FOR KEY SHARE", [project.pk]
        )
        if cursor.fetchone() is None:
            raise IntegrityError(f"project {project.pk} does not exist")
        triggers = not _may_switch_off_triggers(cursor)
    with ThreadPoolExecutor(1, thread_name_prefix="create-tasks") as worker:
        batch = next(batches, None)
        while batch is not None:
            following = worker.submit(next, batches, None)
            _copy_batch(project, batch, kind_for, on_batch, triggers=triggers)
            if triggers:
                _run_deferred_checks()
            total += len(batch)
            batch = following.result()
    return total


def _may_switch_off_triggers(cursor) -> bool:
    """Whether this role may set ``session_replication_role`` (superuser or granted SET)."""
    if connection.pg_version >= 150000:
        cursor.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
    else:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    return bool(cursor.fetchone()[0])


def _run_deferred_checks() -> None:
    """Run the deferred foreign-key checks of the copied tables now (they stay deferred)."""
    with connection.cursor() as cursor:
        if not _FOREIGN_KEYS:
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE contype = 'f' AND condeferrable"
                " AND conrelid = ANY(%s::regclass[])",
                [[model._meta.db_table for model in COPIED]],
            )
            _FOREIGN_KEYS.extend(connection.ops.quote_name(row[0]) for row in cursor.fetchall())
        names = ", ".join(_FOREIGN_KEYS)
        cursor.execute(f"SET CONSTRAINTS {names} IMMEDIATE; SET CONSTRAINTS {names} DEFERRED")


_FOREIGN_KEYS: list[str] = []
_SEQUENCES: dict[str, str] = {}


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _quoted(model) -> str:
    return _quote(model._meta.db_table)


def _reserve_ids(cursor, counts: dict[type, int]) -> list[list[int]]:
    """New ids from each model's sequence (``counts``: model → how many), in one query."""
    for model in counts:
        table = model._meta.db_table
        if table not in _SEQUENCES:
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            _SEQUENCES[table] = cursor.fetchone()[0]
    array = "ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s))"
    arrays = ", ".join([array] * len(counts))
    cursor.execute(
        f"SELECT {arrays}",
        [v for model, count in counts.items() for v in (_SEQUENCES[model._meta.db_table], count)],
    )
    return list(cursor.fetchone())


class _JsonbDumper(Dumper):
    """jsonb in binary COPY: orjson's bytes as they are (psycopg's dumper takes a ``str``
    function's result through an encode), the json module for what orjson refuses."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: object) -> bytes:
        try:
            return b"\x01" + orjson.dumps(obj)
        except TypeError:  # an integer beyond 64 bits, a non-string key
            return b"\x01" + json.dumps(obj).encode()


def _copy_rows(cursor, model, given: Sequence[str], rows: Iterable[tuple], now) -> None:
    """COPY ``rows`` (values for the ``given`` attnames, in order) into ``model``'s table.

    The other columns get one constant each: ``now`` for ``auto_now*``, else the field default;
    an id not given is drawn by the table. Binary format: no escaping of the texts on either
    side (psycopg dumps each value as its column's type; jsonb via orjson)."""
    rest = [
        f
        for f in model._meta.concrete_fields
        if f.attname not in given and f is not model._meta.auto_field
    ]
    constant = tuple(now if _is_auto_now(f) else f.get_default() for f in rest)
    for f, value in zip(rest, constant, strict=True):
        if f.is_relation and value is not None:  # a reference nothing would check
            raise ImproperlyConfigured(f"{model.__name__}.{f.name}: copy it explicitly")
    fields = [model._meta.get_field(name) for name in given] + rest
    columns = ", ".join(_quote(f.column) for f in fields)
    cursor.cursor.adapters.register_dumper(None, _JsonbDumper)  # by oid: for set_types
    with cursor.copy(f"COPY {_quoted(model)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([f.db_type(connection).partition("(")[0] for f in fields])
        write = copy.write_row
        for row in rows:
            write(row + constant)


def copy_rows(model, given: Sequence[str], rows: Iterable[tuple]) -> None:
    """``_copy_rows`` for rows that reference existing records (imported judgments): in the
    caller's transaction, with every foreign-key trigger running as usual."""
    with connection.cursor() as cursor, connection.wrap_database_errors:
        _copy_rows(cursor, model, given, rows, timezone.now())


def _is_auto_now(field) -> bool:
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


def _copy_batch(
    project: Project, specs: list[PromptSpec], kind_for, on_batch: OnBatch | None, *, triggers
) -> None:
    now = timezone.now()
    project_id = project.pk
    counts = [len(spec.responses) for spec in specs]
    tasks, responses = len(specs), sum(counts)
    # wrap_database_errors: psycopg's COPY errors become Django's (IntegrityError, …)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        prompt_ids, response_ids, task_ids, link_ids = _reserve_ids(
            cursor, {Prompt: tasks, Response: responses, Task: tasks, TaskResponse: responses}
        )
        if not triggers:  # SET LOCAL: a rollback (of the transaction or a savepoint) undoes it
            cursor.execute("SET LOCAL session_replication_role = replica")
        _copy_rows(
            cursor, Prompt, ("id", "project_id", "messages", "metadata", "external_id"),
            ((pid, project_id, s.messages, s.metadata, s.external_id)
             for pid, s in zip(prompt_ids, specs, strict=True)),
            now,
        )  # fmt: skip
        ids = iter(response_ids)
        per_task = [[next(ids) for _ in range(count)] for count in counts]
        _copy_rows(
            cursor, Response, ("id", "prompt_id", "text", "source", "generation_params"),
            ((rid, pid, r.text, r.source, r.generation_params)
             for pid, spec, rids in zip(prompt_ids, specs, per_task, strict=True)
             for rid, r in zip(rids, spec.responses, strict=True)),
            now,
        )  # fmt: skip
        _copy_rows(
            cursor, Task, ("id", "project_id", "prompt_id", "kind", "submitted_count"),
            ((tid, project_id, pid, kind_for(spec), spec.submitted)
             for tid, pid, spec in zip(task_ids, prompt_ids, specs, strict=True)),
            now,
        )  # fmt: skip
        links = iter(link_ids)
        _copy_rows(
            cursor, TaskResponse, ("id", "task_id", "response_id", "position", "source_label"),
            ((next(links), tid, rid, position, r.label)
             for tid, spec, rids in zip(task_ids, specs, per_task, strict=True)
             for position, (rid, r) in enumerate(zip(rids, spec.responses, strict=True))),
            now,
        )  # fmt: skip
        if not triggers:  # what on_batch writes is checked by its triggers as usual
            cursor.execute("SET LOCAL session_replication_role = origin")
    if on_batch is not None:
        on_batch(specs, task_ids, per_task)


class PgLoader:
    """PostgreSQL reads: three raw queries per batch, verdicts and decisive principles
    aggregated per judgment by the server (``json_object_agg`` / ``array_agg``), no ORM
    per-row conversion. Produces exactly what ``_OrmLoader`` produces."""

    def __init__(
        self, project: Project, f: SnapshotFilters, lookups: Lookups, full: bool = True
    ) -> None:
        self.project = project
        self.f = f
        self.lookups = lookups
        self.full = full
        q = connection.ops.quote_name
        self.t = {
            name: q(model._meta.db_table)
            for name, model in (
                ("task", Task), ("prompt", Prompt), ("judgment", Judgment),
                ("verdict", PrincipleVerdict),
                ("decisive", Judgment.decisive_principles.through),
                ("taskresponse", TaskResponse), ("response", Response),
                ("profile", AnnotatorProfile),
            )
        }  # fmt: skip

    def _fetch(self, sql: str, params: list) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def tasks(self, after: int, limit: int, until: int | None = None) -> list[tuple]:
        t = self.t
        gold = " AND NOT t.is_gold" if self.f.exclude_gold else ""
        upto = "" if until is None else f" AND t.id <= {int(until)}"
        rows = self._fetch(
            f"SELECT t.id, t.prompt_id, t.kind, t.is_gold, p.messages::text, p.external_id "
            f"FROM {t['task']} t JOIN {t['prompt']} p ON p.id = t.prompt_id "
            f"WHERE t.project_id = %s AND t.id > %s{gold}{upto} ORDER BY t.id LIMIT %s",
            [self.project.pk, after, limit],
        )
        loads = orjson.loads
        return [(tid, pid, kind, gold, loads(m), ext) for tid, pid, kind, gold, m, ext in rows]

    def judgments(self, task_ids: list[int]) -> dict[int, list[JudgmentRecord]]:
        t, f = self.t, self.f
        where, params = ["j.task_id = ANY(%s)"], [task_ids]
        join = ""
        if f.max_judgment_id is not None:
            where.append("j.id <= %s")
            params.append(f.max_judgment_id)
        if f.annotators:
            where.append("j.annotator_id = ANY(%s)")
            params.append(list(f.annotators))
        if f.annotator_kinds:
            join = f" JOIN {t['profile']} ap ON ap.user_id = j.annotator_id"
            where.append("ap.kind = ANY(%s)")
            params.append(list(f.annotator_kinds))
        if f.date_from:
            where.append("j.created_at >= %s")
            params.append(f.date_from)
        if f.date_to:
            where.append("j.created_at <= %s")
            params.append(f.date_to)
        if f.exclude_flagged:
            where.append("NOT j.flagged")
        # Only raw rows carry rationale, confidence, time and origin: skip them otherwise.
        extra = (
            """j.rationale, j.confidence, j.time_spent_ms,
                to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                j.origin"""
            if self.full
            else "'', NULL, NULL, '', ''"
        )
        rows = self._fetch(
            f"""SELECT j.id, j.task_id, j.annotator_id, j.ordering::text, j.strength, j.both_bad,
                j.discretion, j.discretion_note, {extra},
                (SELECT json_object_agg(v.principle_id, CASE v.verdict
                            WHEN 'prefers' THEN v.preferred_response_id
                            WHEN 'tie' THEN {TIE_CODE} ELSE {NA_CODE} END)
                   FROM {t["verdict"]} v WHERE v.judgment_id = j.id)::text,
                (SELECT array_agg(d.principle_id) FROM {t["decisive"]} d
                  WHERE d.judgment_id = j.id)
            FROM {t["judgment"]} j{join}
            WHERE {" AND ".join(where)}
            ORDER BY j.task_id, j.id""",
            params,
        )
        if not rows:
            return {}
        decode = self.lookups.principles
        verdicts = {row[0]: decode.verdicts(row[13]) for row in rows if row[13] is not None}
        decisive = {row[0]: decode.decisive(row[14]) for row in rows if row[14] is not None}
        return judgment_records(rows, verdicts, decisive, self.lookups)

    def texts(self, task_ids: list[int]) -> dict[int, dict[int, str]]:
        t = self.t
        texts: dict[int, dict[int, str]] = {}
        for task_id, response_id, text in self._fetch(
            f"SELECT tr.task_id, tr.response_id, r.text FROM {t['taskresponse']} tr "
            f"JOIN {t['response']} r ON r.id = tr.response_id "
            f"WHERE tr.task_id = ANY(%s) ORDER BY tr.task_id, tr.position",
            [task_ids],
        ):
            texts.setdefault(task_id, {})[response_id] = text
        return texts


def enabled() -> bool:
    """Whether the default database is PostgreSQL, where these statements replace the ORM's."""
    return connection.vendor == "postgresql"


def existing_external_ids(project_id: int, ids: list[str]) -> list[str]:
    """One of ``ids`` already used by a prompt of the project, if any (one array parameter
    instead of thousands)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT external_id FROM {Prompt._meta.db_table} "
            "WHERE project_id = %s AND external_id = ANY(%s) LIMIT 1",
            [project_id, ids],
        )
        row = cursor.fetchone()
    return [row[0]] if row else []
