"""``/healthz/``: the probe of load balancers and of the compose healthcheck."""

import json

import pytest
from django.db import OperationalError, connection
from django.test import override_settings

from annotation.projects import services as project_services


@pytest.mark.django_db
@pytest.mark.parametrize("role", [None, "annotator", "viewer", "manager", "admin"])
def test_healthz_answers_everyone_and_reveals_only_the_status(client, role):
    if role is not None:
        client.force_login(
            project_services.create_user(username=f"h-{role}", password=None, role=role)
        )
    reply = client.get("/healthz/")
    assert reply.status_code == 200
    assert json.loads(reply.content) == {"status": "ok"}
    assert reply["Cache-Control"] == "no-store"
    assert client.head("/healthz/").status_code == 200


@pytest.mark.django_db
@override_settings(ALLOWED_HOSTS=["annotate.example.org"], SECURE_SSL_REDIRECT=True)
def test_healthz_needs_no_allowed_host_nor_https_as_a_container_probe(client):
    # What the compose healthcheck sends: plain HTTP to 127.0.0.1, a Host the site doesn't serve.
    assert client.get("/healthz/", HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.get("/login/", HTTP_HOST="127.0.0.1:8000").status_code == 400  # DisallowedHost
    redirected = client.get("/login/", HTTP_HOST="annotate.example.org")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")


@pytest.mark.django_db
def test_healthz_refuses_writes(client):
    reply = client.post("/healthz/")
    assert reply.status_code == 405
    assert reply["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_fails(client):
    def refuse(execute, sql, params, many, context):
        raise OperationalError("connection refused")

    with connection.execute_wrapper(refuse):
        reply = client.get("/healthz/")
    assert reply.status_code == 503
    assert json.loads(reply.content) == {"status": "unavailable", "database": "OperationalError"}


@pytest.mark.django_db
def test_a_persistent_connection_killed_by_the_server_is_replaced_without_a_probe_query(
    monkeypatch,
):
    """``config.postgresql``: the per-request health check looks at the socket instead of
    sending ``SELECT 1``; a connection the server terminated fails it and is reopened."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL backend only")
    import time

    from django.db import connections

    probe = type(connections["default"])({**connection.settings_dict}, alias="health-probe")
    try:
        probe.ensure_connection()
        with monkeypatch.context() as patched:  # the check itself sends nothing
            patched.setattr(probe.connection, "cursor", lambda *a, **k: pytest.fail("a query"))
            patched.setattr(probe.connection, "execute", lambda *a, **k: pytest.fail("a query"))
            assert probe.is_usable()
        pid = probe.connection.info.backend_pid
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while probe.is_usable() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not probe.is_usable()
        probe.health_check_done = False
        probe.close_if_health_check_failed()  # what Django does at a request's first query
        with probe.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pid
    finally:
        probe.close()
