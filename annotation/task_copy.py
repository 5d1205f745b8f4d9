"""PostgreSQL bulk path of ``services.create_tasks``: ``COPY … FROM STDIN`` into the four tables
of a task import (prompts, responses, tasks, task ↔ response links), ~8× faster than
``bulk_create``. ``copy_rows`` writes rows that reference existing records (the judgments of
a labelled import) the same way, with their foreign keys checked as usual.

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

from annotation.models import Project, Prompt, Response, Task, TaskResponse

if TYPE_CHECKING:
    from annotation.services import PromptSpec

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
