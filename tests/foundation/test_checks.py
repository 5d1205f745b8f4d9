"""Database system checks: PostgreSQL's autovacuum (the lease plans need fresh statistics)."""

import pytest
from django.core import checks
from django.db import connection


@pytest.mark.django_db
def test_autovacuum_check_reports_the_servers_setting():
    messages = [m for m in checks.run_checks(databases=["default"]) if m.id == "annotation.W001"]
    if connection.vendor != "postgresql":
        assert messages == []
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        off = cursor.fetchone()[0] == "off"
    assert len(messages) == off
    if off:
        assert "autovacuum off" in messages[0].msg and messages[0].level == checks.WARNING
