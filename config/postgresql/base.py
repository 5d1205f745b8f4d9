"""Django's PostgreSQL backend with a health check that costs no round trip.

``CONN_HEALTH_CHECKS`` makes Django check a persistent connection once per request before
using it; the stock check runs ``SELECT 1`` (a round trip per request, on every request). An
idle connection between requests has nothing to read: whatever is readable then is the
server's goodbye (the termination notice of a restart or an administrator, or the end of the
stream), so looking at the socket answers the same question locally. A connection that fails
this check is closed and opened again, as with the stock check.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper
from psycopg.pq import TransactionStatus


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        if conn.info.transaction_status == TransactionStatus.UNKNOWN:
            return False
        try:
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False
