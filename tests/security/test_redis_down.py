"""Reliability (issue 17): Redis down for 30 s while 8 annotators work.

A Redis of the test's own (``redis-server`` on 127.0.0.1:``OWN_REDIS_PORT``, default 6391) is
the shared cache (sessions through ``cached_db``, cached users and tokens, throttles, the
metrics refresh bookkeeping) and the Celery broker of a gunicorn server started as in
production (``config/gunicorn.py``, ``DJANGO_ENV=production``) on the test database. Eight
annotators (four signed in by API token, four by session cookie) lease and submit judgments
through the REST API. Mid-run, Redis hangs (SIGSTOP) for half the outage, then is killed and
stays down for the other half, then a fresh, empty one starts on the same port.

Asserted: no answer is a 5xx and no request fails or is retried (every request is answered
once, with its normal status), every acknowledged judgment is in the database, and there are
no duplicates (one judgment per assignment, per annotator and task). Runs on SQLite or
PostgreSQL (``DATABASE_URL``), whichever the suite runs on; skipped only when no
``redis-server`` binary is installed.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db.models import Count
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.authtoken.models import Token

from annotation.datasets import bulk
from annotation.models import Judgment, MetricsReport, WebhookDelivery
from annotation.projects import services as project_services
from annotation.quality import reports as quality_reports
from annotation.specs import PromptSpec, ResponseSpec
from annotation.webhooks import services as webhook_services
from config.celery import app as celery_app
from tests.support import REPO, test_database_url

REDIS_PORT = int(os.environ.get("OWN_REDIS_PORT", "6391"))
OUTAGE_S = float(os.environ.get("REDIS_OUTAGE_S", "30"))
ANNOTATORS = 8
REQUEST_TIMEOUT_S = 30  # a request that hangs this long fails the test


def start_redis() -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_for_port(REDIS_PORT, process)
    return process


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.1)


def end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def redis_server():
    """``holder["process"]``: the current redis-server (the test replaces it)."""
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary on this machine")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", REDIS_PORT)) == 0:
            pytest.fail(f"port {REDIS_PORT} is taken: set OWN_REDIS_PORT to a free one")
    holder = {"process": start_redis()}
    yield holder
    end(holder["process"])


@pytest.fixture
def server(redis_server, tmp_path):
    """gunicorn as deployed, on the test database, with Redis as its cache and broker."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "SECRET_KEY": django_settings.SECRET_KEY,  # sessions made here are signed with it
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": test_database_url(),
        "CACHE_URL": f"redis://127.0.0.1:{REDIS_PORT}/1",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/2",
        "THROTTLE_USER": "100000/min",
        "DATA_DIR": str(tmp_path),
        "STATIC_ROOT": str(tmp_path / "static"),
        "LOG_LEVEL": "WARNING",
        "BIND": "127.0.0.1",
        "PORT": str(port),
        "WEB_WORKERS": "2",
        "WEB_THREADS": "4",
        "WEB_ACCESS_LOG": "",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py",
             "config.wsgi:application"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_port(port, process)
        process.url = f"http://127.0.0.1:{port}"
        process.log = log
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                end(process)


@dataclass
class Record:
    """What the annotators saw."""

    # (when it ended, what, status, seconds it took)
    answers: list[tuple[float, str, int, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    judgments: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, what: str, response: requests.Response, seconds: float) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), what, response.status_code, seconds))
            if response.status_code >= 500 or response.status_code not in {200, 201, 204}:
                self.failures.append(f"{what} {response.status_code}: {response.text[:300]}")


def annotate(url: str, project_id: int, session: requests.Session, record: Record, stop):
    """Lease → submit until ``stop`` is set or no task is left; never retries."""
    csrf = session.cookies.get("csrftoken")
    headers = {"X-CSRFToken": csrf} if csrf else {}
    while not stop.is_set():
        try:
            t = time.monotonic()
            leased = session.post(
                f"{url}/api/v1/projects/{project_id}/next-task/", headers=headers,
                timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
            record.answer("next-task", leased, time.monotonic() - t)
            if leased.status_code != 200:
                return
            body = {
                "idempotency_key": secrets.token_hex(16),
                "ordering": [["A"], ["B"]],
                "strength": 1,
                "verdicts": {},
                "decisive": [],
                "time_spent_ms": 3000,
                "confidence": 4,
            }
            t = time.monotonic()
            submitted = session.post(
                f"{url}/api/v1/assignments/{leased.json()['id']}/submit/", json=body,
                headers=headers, timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
            record.answer("submit", submitted, time.monotonic() - t)
            if submitted.status_code != 201:
                return
            with record.lock:
                record.judgments.append(submitted.json()["id"])
        except requests.RequestException as exc:
            with record.lock:
                record.failures.append(f"{type(exc).__name__}: {exc}")
            return
        time.sleep(0.05)


def signed_in(users, url: str) -> list[requests.Session]:
    """Half the annotators by API token, half by a session cookie (with its CSRF pair)."""
    sessions = []
    for n, user in enumerate(users):
        client = requests.Session()
        client.headers["Accept"] = "application/json"
        if n % 2 == 0:
            client.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
        else:
            store = SessionStore()
            store[SESSION_KEY] = str(user.pk)
            store[BACKEND_SESSION_KEY] = "common.auth.CachedModelBackend"
            store[HASH_SESSION_KEY] = user.get_session_auth_hash()
            store.create()
            client.cookies.set("sessionid", store.session_key, domain="127.0.0.1")
            client.cookies.set("csrftoken", secrets.token_hex(16), domain="127.0.0.1")
        sessions.append(client)
    return sessions


@pytest.mark.django_db(transaction=True)
def test_annotators_keep_working_while_redis_is_down(principle_set, redis_server, server):
    project = project_services.create_project(
        name="Outage", slug="outage", principle_set=principle_set, task_kinds=["compare"],
        annotations_per_task=ANNOTATORS, lease_seconds=900,
    )  # fmt: skip
    bulk.create_tasks(
        project=project,
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"Question {i}?"}],
                responses=[ResponseSpec(f"A{i}", "model:a@1"), ResponseSpec(f"B{i}", "model:b@1")],
            )
            for i in range(600)
        ],
    )
    # every judgment queues a delivery on the broker (Redis): each submit publishes
    webhook_services.create_webhook(url="https://hooks.example.org/j", events=["judgment.created"])
    users = [
        project_services.create_user(username=f"outage-{n}", password=None)
        for n in range(ANNOTATORS)
    ]
    record, stop = Record(), threading.Event()
    threads = [
        threading.Thread(target=annotate, args=(server.url, project.pk, client, record, stop))
        for client in signed_in(users, server.url)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120  # the first request in each worker imports the URLconf
    while len(record.judgments) < 2 * ANNOTATORS and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    before = len(record.judgments)
    redis = redis_server["process"]
    down_from = time.monotonic()
    os.killpg(redis.pid, signal.SIGSTOP)  # hung: connections accepted, never answered
    time.sleep(OUTAGE_S / 2)
    end(redis)  # gone: connections refused
    time.sleep(OUTAGE_S / 2)
    down_until = time.monotonic()
    redis_server["process"] = start_redis()  # back, empty
    time.sleep(5)
    stop.set()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S + 5)
    log = Path(server.log).read_text(errors="replace")[-3000:]

    slow = sorted(  # (seconds, request, when it ended from the outage's start)
        ((round(a[3], 2), a[1], round(a[0] - down_from, 1)) for a in record.answers), reverse=True
    )[:15]
    assert not record.failures, "\n".join(record.failures[:10]) + f"\n{slow}\n" + log
    during = [a for a in record.answers if down_from <= a[0] - a[3] and a[0] <= down_until]
    served = sum(1 for a in during if a[1] == "submit")
    assert before > 0 and served > ANNOTATORS, (before, served)  # work went on during the outage
    slowest = max(a[3] for a in record.answers if a[0] - a[3] >= down_from)
    assert slowest < 5, f"a request took {slowest:.1f} s: {slow}"
    stored = Judgment.objects.filter(task__project=project)
    assert sorted(stored.values_list("id", flat=True)) == sorted(record.judgments)
    assert not stored.values("assignment").annotate(n=Count("id")).filter(n__gt=1).exists()
    deliveries = WebhookDelivery.objects.filter(event="judgment.created")
    assert sorted(d.payload["judgment_id"] for d in deliveries) == sorted(record.judgments)
    assert not stored.values("task", "annotator").annotate(n=Count("id")).filter(n__gt=1).exists()
    print(
        f"{len(record.judgments)} judgments ({served} during the {OUTAGE_S:.0f} s outage), "
        f"{len(record.answers)} requests, none failed; slowest {slowest * 1000:.0f} ms; "
        f"database {django_settings.DATABASES['default']['ENGINE']}"
    )


def test_a_delete_lost_in_an_outage_is_sent_when_redis_answers_again(redis_server):
    """A user saved while Redis hangs: the cached copy's delete cannot reach Redis. It is
    remembered and sent first when Redis answers again, so no stale copy survives the outage;
    meanwhile every operation answers a miss at once."""
    from config.cache import RedisCache

    cache = RedisCache(
        f"redis://127.0.0.1:{REDIS_PORT}/3",
        {"OPTIONS": {"socket_timeout": 0.2, "socket_connect_timeout": 0.2, "retry_after": 1}},
    )
    cache.set("auth:user:1", "active", 300)
    redis = redis_server["process"]
    os.killpg(redis.pid, signal.SIGSTOP)
    try:
        assert cache.delete("auth:user:1") is False  # the user was deactivated: not reached
        t = time.monotonic()
        assert cache.get("auth:user:1") is None and cache.get_many(["a", "b"]) == {}
        assert cache.add("x", 1) is False and cache.set("y", 1) is None
        assert time.monotonic() - t < 0.1  # skipped, not waited for
    finally:
        os.killpg(redis.pid, signal.SIGCONT)
    time.sleep(1.1)
    assert cache.get("auth:user:1") is None  # the remembered delete went first
    cache.set("y", 2)
    assert cache.get("y") == 2


@pytest.mark.django_db
def test_a_metrics_refresh_lost_in_an_outage_is_queued_again(
    project, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The refresh a judgment asks for could not be queued (broker down): its reports stay due.
    Before, every later request saw "a refresh is already due" and queued nothing, forever."""
    settings.BROKER_RETRY_AFTER_S = 0
    sent = []

    def broker_down(name, args=(), **options):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        quality_reports.request_metrics_refresh(project.pk)
    assert MetricsReport.objects.filter(project=project, refresh_due_at__isnull=False).exists()
    monkeypatch.setattr(celery_app, "send_task", lambda name, args=(), **o: sent.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        assert quality_reports.request_metrics_refresh(project.pk) is False  # due soon: wait
    assert sent == []
    later = timezone.now() - timedelta(seconds=quality_reports.OVERDUE_S + 60)
    MetricsReport.objects.filter(project=project).update(refresh_due_at=later)  # time passed
    with django_capture_on_commit_callbacks(execute=True):
        assert quality_reports.request_metrics_refresh(project.pk) is True
    assert sent == ["annotation.refresh_metrics"]
