"""A time limit on each statement of a user-built query (a search filter): past
``QUERY_TIME_LIMIT_MS`` the database cancels it and the caller gets ``QueryTimeout`` (a 503
with a message), so one request cannot hold a database connection or a worker for long.

PostgreSQL: ``statement_timeout``, set for the block's transaction only (``SET LOCAL``).
SQLite: a progress handler interrupts the statement running past the limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction

from common.errors import DomainError

_PG_QUERY_CANCELED = "57014"
_SQLITE_STEPS = 1000  # virtual machine instructions between two looks at the clock


class QueryTimeout(DomainError):
    """A statement ran past the time limit and was cancelled."""

    http_status = 503


def _cancelled(exc: OperationalError) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == _PG_QUERY_CANCELED or (
        getattr(cause, "sqlite_errorname", None) == "SQLITE_INTERRUPT"
    )


@contextmanager
def _postgresql(limit_ms: int) -> Iterator[None]:
    with transaction.atomic(), connection.cursor() as cursor:
        # is_local: the value ends with this transaction (or savepoint when rolled back);
        # the previous one is put back for an enclosing transaction.
        cursor.execute("SELECT current_setting('statement_timeout')")
        (previous,) = cursor.fetchone()
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{limit_ms}ms"])
        yield
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])


@contextmanager
def _sqlite(limit_ms: int) -> Iterator[None]:
    deadline = [float("inf")]

    def start_clock(execute, sql, params, many, context):
        deadline[0] = time.monotonic() + limit_ms / 1000
        return execute(sql, params, many, context)

    connection.ensure_connection()
    raw = connection.connection
    raw.set_progress_handler(lambda: time.monotonic() > deadline[0], _SQLITE_STEPS)
    try:
        with connection.execute_wrapper(start_clock):
            yield
    finally:
        raw.set_progress_handler(None, 0)


@contextmanager
def time_limit(limit_ms: int | None = None) -> Iterator[None]:
    """Each statement run inside the block may take ``limit_ms`` (default
    ``QUERY_TIME_LIMIT_MS``; 0: no limit); one that takes longer raises ``QueryTimeout``."""
    limit_ms = settings.QUERY_TIME_LIMIT_MS if limit_ms is None else limit_ms
    limiter = {"postgresql": _postgresql, "sqlite": _sqlite}.get(connection.vendor)
    if not limit_ms or limiter is None:
        yield
        return
    try:
        with limiter(limit_ms):
            yield
    except OperationalError as exc:
        if not _cancelled(exc):
            raise
        raise QueryTimeout(
            f"the query took longer than the {limit_ms} ms limit and was cancelled: "
            "narrow the filter"
        ) from exc
