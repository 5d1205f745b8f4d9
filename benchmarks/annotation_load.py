"""Load benchmark of the annotator workspace over HTTP, served as in production.

    .venv/bin/python benchmarks/annotation_load.py [--concurrency 8 32] [--duration 15] [--floor]
                                                   [--api]

It creates a scratch PostgreSQL database, migrates it, seeds one project per concurrency level
and path (compare tasks, overlap 3, the demo principle set) and one logged-in session (htmx) or
API token (``--api``) per annotator, starts gunicorn with ``DJANGO_ENV=production`` and the
deployed settings (``config/gunicorn.py``, a shared Redis cache), and runs C concurrent
annotators, each looping

    POST /projects/<slug>/work/          (htmx: lease the next task, render it)
    POST /assignments/<id>/submit/       (htmx: submit a judgment with an idempotency key)

on its own keep-alive connection (each annotator an active member of its project, without
caps). ``--api`` then runs C other annotators on a project of their own (the same seed), each
signed in by an API token (``Authorization: Token <key>``), looping
the REST path with the same judgments (see ``HtmxClient`` and ``ApiClient``)

    POST /api/v1/projects/<pk>/next-task/     (lease the next task, as JSON)
    POST /api/v1/assignments/<id>/submit/     (the judgment as JSON, with an idempotency key)

It prints, for each run, cycles/s, p50/p95/p99 latency of each call, errors, and duplicates
(checked in the database afterwards: a task beyond its overlap, an annotator twice on a task, a
lease handed to two clients, a judgment stored twice), and the CPU each cycle cost gunicorn,
PostgreSQL and the load generator; with ``--api``, the ratios of the REST path's CPU per cycle
to the htmx path's. ``--floor`` then runs the htmx clients on requests that do no annotation
work (see ``FLOORS``): two ``GET /healthz/`` per cycle, then two signed-in requests through
Django's whole request cycle: the serving floor. A CPU reference (``cpu_reference.py``) is
printed before and after: this machine's speed drifts. Then it stops gunicorn and drops the
database.

Environment: ``BENCH_PG_URL`` (default ``postgres://postgres@127.0.0.1:5432/postgres``) is the
maintenance connection used to create and drop the scratch database; ``BENCH_CACHE_URL``
(default ``redis://127.0.0.1:6379/2``) the shared cache, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import runpy
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path

import cpu_reference
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ASSIGNMENT = re.compile(rb'data-assignment="(\d+)"')
KEY = re.compile(rb'name="idempotency_key" value="([0-9a-f]+)"')
DONE = re.compile(rb'data-done="judgment" data-pk="(\d+)"')
PRINCIPLES = ["no_serious_harm", "honest", "helpful", "concise"]

SEED = r"""
import json, sys
import django
django.setup()
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from annotation.datasets.bulk import create_tasks
from annotation.principles.importers import import_principles
from annotation.projects.members import add_member
from annotation.projects.services import create_project, create_user
from annotation.specs import PromptSpec, ResponseSpec
from rest_framework.authtoken.models import Token

spec = json.loads(sys.argv[1])
principle_set = import_principles(path=spec["principles"], publish=True)
out = {"runs": []}
for level, path in ((level, path) for level in spec["levels"] for path in spec["paths"]):
    c = level["concurrency"]
    project = create_project(
        name=f"Load {path} C={c}", slug=f"load-{path}-c{c}", principle_set=principle_set,
        task_kinds=["compare"], annotations_per_task=spec["overlap"],
        lease_seconds=900, randomize_positions=True,
    )
    create_tasks(project=project, specs=(
        PromptSpec(
            messages=[{"role": "user", "content": f"How do I do thing {i} safely?"}],
            responses=[
                ResponseSpec(f"Here is a **careful** answer to {i}.\n\n- step one\n- step two",
                             "model:bench-a@1"),
                ResponseSpec(f"A shorter answer to {i}.", "model:bench-b@1"),
            ],
        )
        for i in range(level["tasks"])
    ))
    credentials = []  # a session key per annotator (htmx), an API token (api)
    for n in range(c):
        user = create_user(username=f"load-{path}-c{c}-{n}", password=None)
        add_member(project=project, user=user)  # annotators lease only in their projects
        if path == "api":
            credentials.append(Token.objects.create(user=user).key)
            continue
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        # the backend that serves users (the first, django-axes', only checks lockouts)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        credentials.append(store.session_key)
    out["runs"].append({"concurrency": c, "path": path, "slug": project.slug,
                        "project_id": project.pk, "credentials": credentials})
print(json.dumps(out))
"""


def gunicorn_settings(env: dict) -> dict:
    """The settings ``config/gunicorn.py`` gives under ``env`` (what the server will use)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return runpy.run_path(str(ROOT / "config" / "gunicorn.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q / 100 * (len(values) - 1))))
    return values[k]


@dataclass
class Stats:
    fetch_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    cycles: int = 0
    errors: list[str] = field(default_factory=list)
    leases: dict[int, int] = field(default_factory=dict)  # assignment id → client
    shared_leases: int = 0
    judgments: set[int] = field(default_factory=set)
    empty: int = 0


class Connection:
    """A minimal HTTP/1.1 keep-alive client (the load generator must stay light)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict, body: bytes = b""):
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("connection closed by server")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        elif length is not None:
            data = await self.reader.readexactly(length)
        else:
            data = await self.reader.read()
            close = True
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass(frozen=True)
class Draw:
    """One judgment, drawn by the annotator and encoded by each path's client."""

    choice: int | None  # the slot preferred; None: a tie
    time_spent_ms: int
    confidence: int
    strength: int = 0
    decisive: str | None = None  # the principle that decided, judged for ``choice``
    tied: str | None = None  # a principle judged a tie

    @classmethod
    def of(cls, rnd: random.Random) -> Draw:
        choice = rnd.choice([0, 1, 1, None])
        draw = cls(choice, rnd.randint(2_000, 60_000), rnd.randint(1, 5))
        if choice is not None:
            draw = replace(draw, strength=rnd.randint(1, 3), decisive=rnd.choice(PRINCIPLES))
        tied = rnd.choice(PRINCIPLES)
        return draw if tied == draw.decisive else replace(draw, tied=tied)


EMPTY = "empty"  # a client's ``leased``: no task left for this annotator


class HtmxClient:
    """The workspace's htmx requests, signed in by a session cookie."""

    def __init__(self, run: dict, session: str) -> None:
        csrf = secrets.token_hex(16)  # an unmasked 32-character CSRF secret: cookie == header
        cookie = f"sessionid={session}; csrftoken={csrf}"
        self.post_headers = {
            "Cookie": cookie,
            "HX-Request": "true",
            "X-CSRFToken": csrf,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        # only a POST leases (a GET shows the live lease or a start button)
        self.fetch = ("POST", f"/projects/{run['slug']}/work/", self.post_headers)

    def leased(self, status: int, body: bytes) -> tuple[int, str] | str | None:
        """(assignment, idempotency key), ``EMPTY``, or None for an unexpected answer."""
        found = ASSIGNMENT.search(body) if status == 200 else None
        if found is None:
            return EMPTY if status == 200 and b'data-empty="1"' in body else None
        return int(found.group(1)), KEY.search(body).group(1).decode()

    def submission(self, assignment: int, key: str, draw: Draw) -> tuple[str, str, dict, bytes]:
        choice = "tie" if draw.choice is None else str(draw.choice)
        form = [
            ("idempotency_key", key),
            ("choice", choice),
            ("time_spent_ms", str(draw.time_spent_ms)),
            ("confidence", str(draw.confidence)),
        ]
        if draw.decisive:
            form += [("strength", str(draw.strength)), (f"v-{draw.decisive}", choice)]
            form.append(("decisive", draw.decisive))
        if draw.tied:
            form.append((f"v-{draw.tied}", "tie"))
        path = f"/assignments/{assignment}/submit/"
        return "POST", path, self.post_headers, urllib.parse.urlencode(form).encode()

    def judgment(self, status: int, body: bytes) -> int | None:
        done = DONE.search(body) if status == 200 else None
        return int(done.group(1)) if done else None


class ApiClient:
    """The REST API's requests (``annotation/api.py``), signed in by an API token. The client
    makes its own idempotency key; responses are named by slot letter, as shown."""

    def __init__(self, run: dict, token: str) -> None:
        auth = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self.fetch = ("POST", f"/api/v1/projects/{run['project_id']}/next-task/", auth)
        self.post_headers = {**auth, "Content-Type": "application/json"}

    def leased(self, status: int, body: bytes) -> tuple[int, str] | str | None:
        if status == 204:
            return EMPTY
        return (json.loads(body)["id"], secrets.token_hex(16)) if status == 200 else None

    def submission(self, assignment: int, key: str, draw: Draw) -> tuple[str, str, dict, bytes]:
        slots = ["A", "B"]
        if draw.choice is None:
            ordering, verdicts = [slots], {}
        else:
            best = slots.pop(draw.choice)
            ordering, verdicts = [[best], slots], {draw.decisive: best}
        if draw.tied:
            verdicts[draw.tied] = "tie"
        judgment = {
            "idempotency_key": key,
            "ordering": ordering,
            "strength": draw.strength,
            "verdicts": verdicts,
            "decisive": [draw.decisive] if draw.decisive else [],
            "time_spent_ms": draw.time_spent_ms,
            "confidence": draw.confidence,
        }
        path = f"/api/v1/assignments/{assignment}/submit/"
        return "POST", path, self.post_headers, json.dumps(judgment).encode()

    def judgment(self, status: int, body: bytes) -> int | None:
        return json.loads(body)["id"] if status == 201 else None


CLIENTS = {"htmx": HtmxClient, "api": ApiClient}


async def annotator(
    port: int,
    client: HtmxClient | ApiClient,
    stats: Stats,
    measure_from: float,
    stop_at: float,
    rnd: random.Random,
) -> None:
    """Loop next-task → submit on one keep-alive connection until ``stop_at``."""
    conn = Connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            status, body = await conn.request(*client.fetch)
            t1 = time.monotonic()
            measured = t0 >= measure_from
            leased = client.leased(status, body)
            if leased == EMPTY:
                stats.empty += 1
                return
            if leased is None:
                stats.errors.append(f"fetch {status}: {body[:120]!r}")
                continue
            assignment, key = leased
            owner = stats.leases.setdefault(assignment, id(client))
            if owner != id(client):
                stats.shared_leases += 1
            request = client.submission(assignment, key, Draw.of(rnd))
            t2 = time.monotonic()
            status, body = await conn.request(*request)
            t3 = time.monotonic()
            judgment = client.judgment(status, body)
            if judgment is None:
                stats.errors.append(f"submit {status}: {body[:120]!r}")
                continue
            if judgment in stats.judgments:
                stats.errors.append(f"judgment {judgment} acknowledged twice")
            stats.judgments.add(judgment)
            if measured:
                stats.fetch_ms.append((t1 - t0) * 1000)
                stats.submit_ms.append((t3 - t2) * 1000)
                stats.cycles += 1
    except Exception as exc:  # a broken connection is an error of the run, not of the script
        stats.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        await conn.close()


async def warm_up(port: int, workers: int) -> float:
    """Until every worker answers fast: the first request in a worker imports the URLconf."""
    started = time.monotonic()
    for _ in range(30):
        conns = [Connection("127.0.0.1", port) for _ in range(2 * workers)]
        t = time.monotonic()
        await asyncio.gather(*(c.request("GET", "/login/", {}) for c in conns))
        await asyncio.gather(*(c.close() for c in conns))
        if time.monotonic() - t < 0.5:
            break
    return time.monotonic() - started


async def run_level(
    port: int, run: dict, warmup: float, duration: float, cpu_probe
) -> tuple[Stats, float, dict]:
    """Run one concurrency level on one path (``run["path"]``, a key of ``CLIENTS``);
    ``cpu_probe()`` is read when measuring starts and stops."""
    stats = Stats()
    start = time.monotonic()
    measure_from = start + warmup
    stop_at = measure_from + duration
    rnd = random.Random(run["concurrency"])  # the same draws on each path
    client = CLIENTS[run["path"]]
    cpu: dict = {}

    async def probe() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu["start"] = cpu_probe()
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        cpu["stop"] = cpu_probe()

    await asyncio.gather(
        probe(),
        *(
            annotator(
                port, client(run, c), stats, measure_from, stop_at, random.Random(rnd.random())
            )
            for c in run["credentials"]
        ),
    )
    return stats, min(duration, time.monotonic() - measure_from), cpu


@dataclass(frozen=True)
class Floor:
    """A request that does no annotation work, looped twice per cycle by ``--floor``."""

    what: str
    path: str
    status: int
    signed_in: bool


FLOORS = (
    Floor("two GET /healthz/ (answered by the first middleware)", "/healthz/", 200, False),
    # the whole middleware stack, the session and the user from the cache, the annotator check;
    # then require_POST answers 405 (and Django logs a warning): no query, no template
    Floor(
        "two signed-in GET /assignments/0/submit/ (Django's request cycle, no query: 405)",
        "/assignments/0/submit/",
        405,
        True,
    ),
)


async def run_floor(
    port: int, floor: Floor, sessions: list[str], duration: float, cpu_probe
) -> tuple[int, dict]:
    """``--floor``: one client per session looping ``floor``'s request twice per cycle: what
    serving alone costs, before any annotation work. Returns the cycles completed in
    ``duration`` and the CPU probe readings."""
    stop_at = time.monotonic() + duration
    cycles = 0
    cpu = {"start": cpu_probe()}

    async def client(session: str) -> None:
        nonlocal cycles
        headers = {"Accept": "*/*"}
        if floor.signed_in:
            headers["Cookie"] = f"sessionid={session}"
        conn = Connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop_at:
                for _ in range(2):
                    status, _ = await conn.request("GET", floor.path, headers)
                    if status != floor.status:
                        raise RuntimeError(f"{floor.path} answered {status}")
                cycles += 1
        finally:
            await conn.close()

    await asyncio.gather(*(client(session) for session in sessions))
    cpu["stop"] = cpu_probe()
    return cycles, cpu


def db_duplicates(db_url: str, project_id: int, overlap: int) -> dict:
    queries = {
        "tasks_beyond_overlap": """
            SELECT count(*) FROM annotation_task t WHERE t.project_id = %(p)s AND (
                t.submitted_count > %(o)s OR (
                SELECT count(*) FROM annotation_assignment a WHERE a.task_id = t.id
                AND (a.state = 'submitted' OR (a.state = 'leased' AND a.leased_until > now()))
            ) > %(o)s)""",
        "annotator_twice_on_a_task": """
            SELECT count(*) FROM (SELECT 1 FROM annotation_judgment j
                JOIN annotation_task t ON t.id = j.task_id WHERE t.project_id = %(p)s
                GROUP BY j.task_id, j.annotator_id HAVING count(*) > 1) d""",
        "judgments_per_assignment_over_1": """
            SELECT count(*) FROM (SELECT 1 FROM annotation_judgment j
                JOIN annotation_task t ON t.id = j.task_id WHERE t.project_id = %(p)s
                GROUP BY j.assignment_id HAVING count(*) > 1) d""",
        "submitted_count_mismatch": """
            SELECT count(*) FROM annotation_task t WHERE t.project_id = %(p)s AND
                t.submitted_count <> (SELECT count(*) FROM annotation_judgment j
                                      WHERE j.task_id = t.id)""",
        "judgments": """
            SELECT count(*) FROM annotation_judgment j JOIN annotation_task t ON t.id = j.task_id
            WHERE t.project_id = %(p)s""",
    }
    with psycopg.connect(db_url, autocommit=True) as conn:
        return {
            name: conn.execute(sql, {"p": project_id, "o": overlap}).fetchone()[0]
            for name, sql in queries.items()
        }


def process_cpu_seconds(proc: Path) -> float:
    """User + system CPU of the process at ``proc`` (``/proc/<pid>``), in seconds; 0 if gone."""
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU of a process and its children (Linux /proc), in seconds."""
    pids = [root_pid]
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return sum(process_cpu_seconds(Path(f"/proc/{pid}")) for pid in pids)


class AutoAnalyze:
    """What autovacuum's analyze does on a production server, for a server that has it off.

    The lease statements' plans depend on current statistics: analyzed while the judgment and
    assignment tables were empty, PostgreSQL checks "not already done by this annotator" by
    scanning the annotator's whole history once per candidate task (measured: next-task from
    6 ms to 1 s after 950 judgments by one annotator). A production server (autovacuum on, the
    default) re-analyzes a table once ``autovacuum_analyze_threshold +
    autovacuum_analyze_scale_factor × rows`` of its rows changed; this thread applies the same
    rule each second (the benchmark's database is minutes old, a production one has statistics
    that match its size). Its ANALYZE runs on a backend of the benchmark database, so its CPU
    counts in the PostgreSQL figures."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def needed(db_url: str) -> bool:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return conn.execute("SHOW autovacuum").fetchone()[0] == "off"

    def __enter__(self) -> AutoAnalyze:  # once per level
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="autoanalyze", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            threshold, scale = (
                float(conn.execute(f"SHOW {name}").fetchone()[0])
                for name in ("autovacuum_analyze_threshold", "autovacuum_analyze_scale_factor")
            )
            while not self._stop.wait(1.0):
                stale = conn.execute(
                    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                    " WHERE s.n_mod_since_analyze > %s + %s * greatest(c.reltuples, 0)",
                    [threshold, scale],
                ).fetchall()
                for (table,) in stale:
                    conn.execute(f'ANALYZE "{table}"')


def postgres_cpu_seconds(db_name: str) -> float:
    """CPU of the PostgreSQL backends serving the benchmark database."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"postgres" in cmdline and db_name.encode() in cmdline:
            total += process_cpu_seconds(proc)
    return total


def report(run: dict, stats: Stats, seconds: float, dup: dict, cpu: dict) -> dict:
    """Print one run's figures (``cpu``: the probe's readings) and return them as a row."""
    c = run["concurrency"]
    row = {
        "path": run["path"],
        "concurrency": c,
        "cycles": stats.cycles,
        "cycles_per_s": stats.cycles / seconds if seconds else 0.0,
        "fetch_ms": {q: percentile(stats.fetch_ms, q) for q in (50, 95, 99)},
        "submit_ms": {q: percentile(stats.submit_ms, q) for q in (50, 95, 99)},
        "errors": len(stats.errors),
        "duplicate_assignments": stats.shared_leases
        + dup["tasks_beyond_overlap"]
        + dup["annotator_twice_on_a_task"],
        "duplicate_judgments": dup["judgments_per_assignment_over_1"]
        + (len(stats.judgments) != dup["judgments"]),
        "db": dup,
    }
    f, s = row["fetch_ms"], row["submit_ms"]
    print(
        f"{run['path']:<4} C={c:<3} {row['cycles_per_s']:7.1f} cycles/s "
        f"({stats.cycles} in {seconds:.1f}s)  "
        f"next-task p50/p95/p99 {f[50]:5.1f}/{f[95]:5.1f}/{f[99]:5.1f} ms  "
        f"submit p50/p95/p99 {s[50]:5.1f}/{s[95]:5.1f}/{s[99]:5.1f} ms  "
        f"errors {row['errors']}  duplicate assignments {row['duplicate_assignments']}  "
        f"duplicate judgments {row['duplicate_judgments']}",
        flush=True,
    )
    if stats.errors:
        print("  first errors:", stats.errors[:5])
    if stats.empty:
        print(f"  note: {stats.empty} annotators ran out of work (raise --tasks)")
    if "stop" in cpu and stats.cycles:
        web, db, own = (
            1000 * (b - a) / stats.cycles for a, b in zip(cpu["start"], cpu["stop"], strict=True)
        )
        row["cpu_ms_per_cycle"] = {"gunicorn": web, "postgresql": db, "load_generator": own}
        print(
            f"  CPU per cycle: gunicorn {web:.1f} ms, PostgreSQL {db:.1f} ms, load generator "
            f"{own:.1f} ms; machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
            "CPUs",
            flush=True,
        )
    return row


def compare(rows: list[dict]) -> None:
    """``--api``: the REST path's CPU per cycle over the htmx path's, at each concurrency."""
    cpu = {(r["path"], r["concurrency"]): r.get("cpu_ms_per_cycle") for r in rows}
    for c in dict.fromkeys(r["concurrency"] for r in rows):
        api, htmx = cpu.get(("api", c)), cpu.get(("htmx", c))
        if api and htmx:
            print(
                f"api / htmx C={c:<3} CPU per cycle: gunicorn "
                f"{api['gunicorn'] / htmx['gunicorn']:.2f}× "
                f"({api['gunicorn']:.1f} / {htmx['gunicorn']:.1f} ms), PostgreSQL "
                f"{api['postgresql'] / htmx['postgresql']:.2f}× "
                f"({api['postgresql']:.1f} / {htmx['postgresql']:.1f} ms)",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=4000, help="tasks per level (overlap 3)")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--workers", type=int, help="default: config/gunicorn.py's")
    parser.add_argument("--threads", type=int, help="default: config/gunicorn.py's")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--floor", action="store_true",
        help="also measure the serving floor: C clients looping requests doing no annotation work",
    )  # fmt: skip
    parser.add_argument(
        "--no-autoanalyze", action="store_true",
        help="where the server runs with autovacuum off, leave the statistics as seeded",
    )  # fmt: skip
    parser.add_argument(
        "--api", action="store_true",
        help="after each level's htmx run, as many annotators on the REST API (token auth)",
    )  # fmt: skip
    args = parser.parse_args()

    admin_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db_name = f"annotation_bench_{os.getpid()}"
    parts = urllib.parse.urlsplit(admin_url)
    db_url = urllib.parse.urlunsplit(parts._replace(path=f"/{db_name}"))
    tmp = Path(tempfile.mkdtemp(prefix="annotation-bench-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": db_url,
        "DB_CONN_MAX_AGE": "600",
        # as deployed (docker/compose.yaml): sessions and users served from the shared cache
        "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/2"),
        "CACHE_KEY_PREFIX": db_name,
        "DATA_DIR": str(tmp),
        "STATIC_ROOT": str(tmp / "static"),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    server = None
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    try:
        t = time.monotonic()
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
        subprocess.run(
            [PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        spec = {
            "principles": str(ROOT / "annotation" / "demo_data" / "principles.yaml"),
            "overlap": args.overlap,
            "levels": [{"concurrency": c, "tasks": args.tasks} for c in args.concurrency],
            "paths": ["htmx", "api"] if args.api else ["htmx"],
        }
        seeded = subprocess.run(
            [PYTHON, "-c", SEED, json.dumps(spec)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        runs = json.loads(seeded.stdout.strip().splitlines()[-1])["runs"]
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk import
        print(
            f"database {db_name}: migrated and seeded in {time.monotonic() - t:.1f}s "
            f"({args.tasks} compare tasks × overlap {args.overlap} per level and path)",
            flush=True,
        )

        port = free_port()
        server_log = (tmp / "gunicorn.log").open("wb")
        server_env = {**env, "BIND": "127.0.0.1", "PORT": str(port)}
        for name, value in (("WEB_WORKERS", args.workers), ("WEB_THREADS", args.threads)):
            if value is not None:
                server_env[name] = str(value)
        served = gunicorn_settings(server_env)
        server = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi:application"],
            cwd=ROOT,
            env=server_env,
            stdout=subprocess.DEVNULL,
            stderr=server_log,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        print(
            f"gunicorn (config/gunicorn.py): {served['workers']} workers × {served['threads']} "
            f"threads ({served['worker_class']}), access log {served['accesslog'] or 'off'}, "
            f"DJANGO_ENV=production, PostgreSQL; {os.cpu_count()} CPUs on this machine",
            flush=True,
        )
        warmed = asyncio.run(warm_up(port, served["workers"]))
        print(
            f"workers warm after {warmed:.1f}s (the first request in a worker imports the URLconf)",
            flush=True,
        )

        print(f"before: {cpu_reference.describe()}", flush=True)

        def probe() -> tuple[float, float, float]:
            return cpu_seconds(server.pid), postgres_cpu_seconds(db_name), time.process_time()

        analyzer = None
        if AutoAnalyze.needed(db_url):
            if args.no_autoanalyze:
                print("PostgreSQL runs with autovacuum off: statistics stay as seeded", flush=True)
            else:
                analyzer = AutoAnalyze(db_url)
                print(
                    "PostgreSQL runs with autovacuum off: tables are analyzed as autovacuum "
                    "would analyze them in production (see AutoAnalyze)",
                    flush=True,
                )
        rows = []
        for run in runs:  # each level's htmx run, then its api run
            with analyzer or contextlib.nullcontext():
                stats, seconds, cpu = asyncio.run(
                    run_level(port, run, args.warmup, args.duration, probe)
                )
            dup = db_duplicates(db_url, run["project_id"], args.overlap)
            rows.append(report(run, stats, seconds, dup, cpu))
        compare(rows)
        if args.floor:
            sessions = [run for run in runs if run["path"] == "htmx"]
            for floor, run in itertools.product(FLOORS, sessions):
                c = run["concurrency"]
                cycles, cpu = asyncio.run(
                    run_floor(port, floor, run["credentials"], args.duration, probe)
                )
                web, db, own = (b - a for a, b in zip(cpu["start"], cpu["stop"], strict=True))
                print(
                    f"floor C={c:<3} {cycles / args.duration:7.1f} cycles/s of {floor.what}; "
                    f"CPU per cycle: gunicorn {1000 * web / cycles:.1f} ms, PostgreSQL "
                    f"{1000 * db / cycles:.1f} ms, load generator {1000 * own / cycles:.1f} ms",
                    flush=True,
                )
        print(f"after: {cpu_reference.describe()}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        ok = all(
            r["errors"] == 0 and r["duplicate_assignments"] == 0 and r["duplicate_judgments"] == 0
            for r in rows
        )
        return 0 if ok else 1
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if args.keep:
            print(f"kept: {db_url}")
        else:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        log = tmp / "gunicorn.log"
        if log.exists() and log.stat().st_size:
            tail = log.read_bytes()[-2000:].decode(errors="replace")
            print(f"gunicorn log ({log.stat().st_size} bytes), last lines:\n{tail}")
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    sys.exit(main())
