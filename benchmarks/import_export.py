"""Import/export benchmark against PostgreSQL (issue 4). One command, prints figures:

    .venv/bin/python benchmarks/import_export.py [--database-url postgres://…/bench_io]
        [--tasks 20000] [--judgments 1000000] [--skip-import] [--skip-export]
        [--kinds preference] [--formats jsonl,parquet] [--reuse]
    .venv/bin/python benchmarks/import_export.py --export-memory 4000 [--database-url …]

1. **Import**: a JSONL file of ``--tasks`` compare tasks (a prompt + 2 responses of 300–1,500
   characters) through ``import_prompts`` (parse, validate every line, write in one transaction)
   — the same path as ``manage.py import_prompts`` and the API upload. Target ≥ 20,000 tasks/s.
   Also: the same file as labelled TRL preference rows (tasks + judgments).
2. **Export**: ``--judgments`` generated judgments (every task judged by
   ``judgments / tasks`` annotators, each with principle verdicts and a decisive principle) are
   exported by ``snapshots.build_snapshot`` as TRL preference JSONL and Parquet, each in a fresh
   process whose peak RSS growth is measured (after loading the Arrow/Parquet code once).
   Target ≥ 50,000 rows/s, RSS growth ≤ 100 MB. ``SNAPSHOT_WORKERS=N`` tries N processes.

3. **Streamed export memory** (``--export-memory N``, issue 17): N generated judgments are
   exported through the real WSGI stack (gunicorn with ``config/gunicorn.py``, one process) by
   ``GET /api/v1/projects/{id}/export/`` as JSONL and as CSV; the client reads the stream while
   the web process's RSS is sampled. Printed: peak growth during the stream and what stays
   after it, over the RSS after a warm-up export of 1,000 judgments (the code and one read
   batch resident). Target ≤ 30 MiB at any N.

A CPU reference (``cpu_reference.py``) is printed first and after each figure: this machine's
speed drifts, and only figures taken at a similar reference compare.

The database named in the URL is dropped and re-created (default ``bench_import_export``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cpu_reference

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_import_export"
WORDS = """the model answer question principle helpful honest harmless careful clear because when
where which people should would could never always data safety reason explain context example
result value policy review consider detail support evidence""".split()  # noqa: SIM905


def text(rng: random.Random, low: int, high: int) -> str:
    target = rng.randint(low, high)
    words = []
    size = 0
    while size < target:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:target]


def write_prompt_file(path: Path, count: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            record = {
                "id": f"b{i}",
                "prompt": text(rng, 60, 400) + "?",
                "responses": [text(rng, 300, 1500), text(rng, 300, 1500)],
            }
            handle.write(json.dumps(record) + "\n")
    return path.stat().st_size


def write_trl_file(path: Path, count: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            record = {
                "id": f"t{i}",
                "prompt": [{"role": "user", "content": text(rng, 60, 400) + "?"}],
                "chosen": [{"role": "assistant", "content": text(rng, 300, 1500)}],
                "rejected": [{"role": "assistant", "content": text(rng, 300, 1500)}],
            }
            handle.write(json.dumps(record) + "\n")
    return path.stat().st_size


# ---------------------------------------------------------------- database set-up


def recreate_database(url: str) -> None:
    import psycopg
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DEBUG"] = "0"  # as in production: no per-query log in memory
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DATA_DIR", str(Path(tempfile.gettempdir()) / "bench-import-export"))
    import django

    django.setup()


def make_project(slug: str):
    from annotation.principles import services as principle_services
    from annotation.projects import services as project_services
    from annotation.specs import PrincipleSpec

    principle_set = principle_services.create_principle_set(
        name=f"bench-{slug}",
        principles=[
            PrincipleSpec(key="harmless", title="Be harmless", authority="root"),
            PrincipleSpec(key="honest", title="Be honest"),
            PrincipleSpec(key="helpful", title="Be helpful", authority="guideline"),
        ],
        publish=True,
    )
    return project_services.create_project(
        name=slug, slug=slug, principle_set=principle_set, task_kinds=["compare"]
    )


# ---------------------------------------------------------------- import


def bench_import(tasks: int, folder: Path) -> dict:
    from annotation.datasets.importers.preferences import import_preferences
    from annotation.datasets.importers.prompts import import_prompts
    from annotation.models import Judgment, Task

    path = folder / "prompts.jsonl"
    size = write_prompt_file(path, tasks)
    project = make_project("bench-import")
    started = time.perf_counter()
    count = import_prompts(project=project, path=path)
    seconds = time.perf_counter() - started
    assert count == tasks == Task.objects.filter(project=project).count()
    result = {"tasks": count, "seconds": seconds, "tasks_per_s": count / seconds, "mb": size / 1e6}
    trl = folder / "trl.jsonl"
    write_trl_file(trl, tasks)
    labelled = make_project("bench-import-trl")
    started = time.perf_counter()
    outcome = import_preferences(project=labelled, path=trl, fmt="trl", annotator="bench-ext")
    trl_seconds = time.perf_counter() - started
    assert Judgment.objects.filter(task__project=labelled).count() == outcome.judgments == tasks
    result["trl_seconds"] = trl_seconds
    result["trl_tasks_per_s"] = outcome.tasks / trl_seconds
    return result


# ---------------------------------------------------------------- export data


def copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    """``COPY … FROM STDIN`` (generation only; not part of any timed figure)."""
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def generate_judgments(
    judgments: int, tasks: int, folder: Path, slug: str = "bench-export"
) -> tuple[int, int]:
    """A project of ``tasks`` compare tasks, each judged by ``judgments // tasks`` annotators
    (ordering, strength, rationale, 3 principle verdicts, 1 decisive principle)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from annotation.datasets.importers.prompts import import_prompts
    from annotation.models import Judgment, Principle, PrincipleVerdict, Task, TaskResponse
    from annotation.projects import services as project_services

    path = folder / f"{slug}-prompts.jsonl"
    write_prompt_file(path, tasks, seed=7)
    project = make_project(slug)
    import_prompts(project=project, path=path)
    per_task = max(judgments // tasks, 1)
    annotators = [
        project_services.create_user(username=f"{slug}-annotator-{i}", password=None).pk
        for i in range(per_task)
    ]
    principles = list(
        Principle.objects.filter(principle_set=project.principle_set)
        .order_by("position")
        .values_list("id", flat=True)
    )
    pairs: dict[int, list[int]] = {}
    for task_id, response_id in (
        TaskResponse.objects.filter(task__project=project)
        .order_by("task_id", "position")
        .values_list("task_id", "response_id")
    ):
        pairs.setdefault(task_id, []).append(response_id)
    rng = random.Random(3)
    now = timezone.now()
    table = Judgment._meta.db_table
    verdict_table = PrincipleVerdict._meta.db_table
    decisive_table = Judgment.decisive_principles.through._meta.db_table
    columns = ["id", "task_id", "annotator_id", "ordering", "strength", "both_bad", "rationale",
               "confidence", "time_spent_ms", "discretion", "discretion_note", "idempotency_key",
               "origin", "created_at", "updated_at"]  # fmt: skip
    items = list(pairs.items())
    total = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")
        judgment_id = cursor.fetchone()[0]
        for start in range(0, len(items), 1000):  # streamed in chunks: bounded memory
            judgment_rows, verdict_rows, decisive_rows = [], [], []
            for task_id, (a, b) in items[start : start + 1000]:
                for annotator in annotators:
                    winner, loser = (a, b) if rng.random() < 0.7 else (b, a)
                    judgment_rows.append((
                        judgment_id, task_id, annotator, json.dumps([[winner], [loser]]),
                        rng.randint(0, 3), rng.random() < 0.05, "short rationale", None, None,
                        rng.random() < 0.1, "", None, "bench", now, now,
                    ))  # fmt: skip
                    for principle in principles:
                        draw = rng.random()
                        if draw < 0.6:
                            verdict_rows.append((judgment_id, principle, "prefers", winner))
                        elif draw < 0.8:
                            verdict_rows.append((judgment_id, principle, "prefers", loser))
                        else:
                            verdict_rows.append((judgment_id, principle, "tie", None))
                    decisive_rows.append((judgment_id, principles[0]))
                    judgment_id += 1
            copy_rows(cursor, table, columns, judgment_rows)
            copy_rows(cursor, verdict_table,
                      ["judgment_id", "principle_id", "verdict", "preferred_response_id"],
                      verdict_rows)  # fmt: skip
            copy_rows(cursor, decisive_table, ["judgment_id", "principle_id"], decisive_rows)
            total += len(judgment_rows)
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [judgment_id])
        Task.objects.filter(project=project).update(submitted_count=per_task)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return project.pk, total


# ---------------------------------------------------------------- export (own process)


def process_rss(pid: int | str = "self") -> int:
    """Resident set size of process ``pid`` (this one by default) in bytes."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Samples a process's resident set size (this one's by default) every 20 ms."""

    def __init__(self, pid: int | str = "self") -> None:
        self.pid = pid
        self.peak = self.current(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current(pid: int | str = "self") -> int:
        return process_rss(pid)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.current(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current(self.pid))


def export_once(project_id: int, fmt: str, kind: str) -> dict:
    """Runs in a child process: build one snapshot, report time, rows and RSS growth."""
    from annotation.datasets import filters as dataset_filters
    from annotation.datasets import snapshots
    from annotation.datasets.exports.writers import warm_up

    warm_up()  # library code pages are resident once, whatever the export's size
    from annotation.models import DatasetSnapshot, Project

    project = Project.objects.get(pk=project_id)
    options, f, _ = dataset_filters.prepare(project=project, kind=kind)
    f = snapshots._freeze(project, f, kind)
    snapshot = DatasetSnapshot.objects.create(
        project=project, principle_set=project.principle_set, kind=kind, format=fmt,
        filters=dataset_filters.frozen_record(project, options, f), name="bench",
    )  # fmt: skip
    baseline = PeakRss.current()
    with PeakRss() as rss:
        started = time.perf_counter()
        snapshot = snapshots.build_snapshot(snapshot_id=snapshot.pk)
        seconds = time.perf_counter() - started
    assert snapshot.status == "ready", snapshot.error
    snapshots.artifact_file(snapshot).unlink()  # a few GB per run: measured, not kept
    return {
        "kind": kind,
        "format": fmt,
        "rows": snapshot.row_count,
        "seconds": seconds,
        "rows_per_s": snapshot.row_count / seconds,
        "rss_growth_mb": (rss.peak - baseline) / 2**20,
        "mb": snapshot.size_bytes / 1e6,
        "sha256": snapshot.sha256[:16],
    }


def run_child(url: str, project_id: int, fmt: str, kind: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--database-url", url, "--child-export",
         f"{project_id}:{fmt}:{kind}"],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- streamed export over HTTP


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_web(url: str, port: int) -> subprocess.Popen:
    """gunicorn as production runs it (``config/gunicorn.py``), one worker process."""
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "0", "BIND": "127.0.0.1",
           "PORT": str(port), "WEB_WORKERS": "1", "WEB_ACCESS_LOG": ""}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def web_worker_pid(master: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def stream_export(port: int, project_id: int, token: str, fmt: str) -> tuple[int, int]:
    """Read one streamed export to its end in 1 MiB reads: (lines, bytes)."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/projects/{project_id}/export/?file_format={fmt}",
        headers={"Authorization": f"Token {token}"},
    )  # fmt: skip
    lines = size = 0
    with urllib.request.urlopen(request, timeout=600) as response:
        while chunk := response.read(1 << 20):
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines, size


def bench_export_memory(url: str, judgments: int, export_tasks: int, folder: Path) -> None:
    """Stream ``judgments`` generated judgments through gunicorn; print RSS growth per format."""
    from rest_framework.authtoken.models import Token

    from annotation.projects import services as project_services

    started = time.perf_counter()
    project_id, count = generate_judgments(judgments, min(export_tasks, judgments), folder)
    print(f"(generated {count:,} judgments in {time.perf_counter() - started:.0f} s)")
    warm_id, _ = generate_judgments(1000, 1000, folder, slug="bench-warm-up")
    staff = project_services.create_user(username="bench-staff", password=None, role="admin")
    token = Token.objects.create(user=staff).key
    port = free_port()
    web = start_web(url, port)
    try:
        worker = web_worker_pid(web.pid)
        deadline = time.monotonic() + 60
        while True:  # until the worker answers
            try:
                stream_export(port, warm_id, token, "jsonl")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        for fmt in ("jsonl", "csv"):
            stream_export(port, warm_id, token, fmt)  # code and one batch resident
            baseline = process_rss(worker)
            with PeakRss(worker) as rss:
                begun = time.perf_counter()
                lines, size = stream_export(port, project_id, token, fmt)
                seconds = time.perf_counter() - begun
            peak = rss.peak
            time.sleep(0.5)
            after = process_rss(worker)
            rows = lines - (1 if fmt == "csv" else 0)  # the CSV header
            print(
                f"stream  {rows:>9,} preference rows as {fmt:<5} over HTTP in {seconds:.2f} s "
                f"= {rows / seconds:,.0f} rows/s, {size / 2**20:,.0f} MiB; web process RSS "
                f"peak +{(peak - baseline) / 2**20:.1f} MiB, after +"
                f"{(after - baseline) / 2**20:.1f} MiB [target ≤ 30 MiB]"
            )
            print(f"        then {cpu_reference.describe()}", flush=True)
    finally:
        web.terminate()
        web.wait(timeout=30)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--export-tasks", type=int, default=20_000)
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--kinds", default="preference", help="comma-separated export kinds")
    parser.add_argument("--formats", default="jsonl,parquet", help="comma-separated formats")
    parser.add_argument(
        "--reuse", action="store_true",
        help="keep the database and its generated judgments from the previous run",
    )  # fmt: skip
    parser.add_argument(
        "--export-memory", type=int, metavar="N",
        help="only stream an export of N judgments over HTTP and measure the web process's RSS",
    )  # fmt: skip
    parser.add_argument("--child-export", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        parser.error("this benchmark runs against PostgreSQL")
    setup_django(args.database_url)
    if args.child_export:
        project_id, fmt, kind = args.child_export.split(":")
        print(json.dumps(export_once(int(project_id), fmt, kind)))
        return

    from django.core.management import call_command
    from django.db import connection

    from annotation.models import Judgment, Project

    if args.export_memory:
        recreate_database(args.database_url)
        connection.close()
        call_command("migrate", verbosity=0, stdout=io.StringIO())
        print(cpu_reference.describe(), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            bench_export_memory(args.database_url, args.export_memory, args.export_tasks, Path(tmp))
        return
    reused = None
    if args.reuse:
        reused = Project.objects.filter(slug="bench-export").first()
    if reused is None:
        recreate_database(args.database_url)
        connection.close()
        call_command("migrate", verbosity=0, stdout=io.StringIO())
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        print(f"PostgreSQL: {cursor.fetchone()[0].split(',')[0]}; CPUs: {os.cpu_count()}")
    print(cpu_reference.describe(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_import:
            result = bench_import(args.tasks, folder)
            print(
                f"import  {result['tasks']:>9,} compare tasks ({result['mb']:.0f} MB JSONL) in "
                f"{result['seconds']:.2f} s = {result['tasks_per_s']:,.0f} tasks/s "
                f"[target ≥ 20,000]"
            )
            print(f"        then {cpu_reference.describe()}", flush=True)
            print(
                f"import  {result['tasks']:>9,} TRL pairs as tasks + judgments in "
                f"{result['trl_seconds']:.2f} s = {result['trl_tasks_per_s']:,.0f} tasks/s"
            )
        if not args.skip_export:
            started = time.perf_counter()
            if reused is not None:
                project_id = reused.pk
                count = Judgment.objects.filter(task__project=reused).count()
                print(f"(reusing {count:,} generated judgments)")
            else:
                project_id, count = generate_judgments(args.judgments, args.export_tasks, folder)
                print(f"(generated {count:,} judgments in {time.perf_counter() - started:.0f} s)")
            for kind in args.kinds.split(","):
                for fmt in args.formats.split(","):
                    r = run_child(args.database_url, project_id, fmt, kind)
                    print(
                        f"export  {r['rows']:>9,} {r['kind']} rows as {r['format']:<7} in "
                        f"{r['seconds']:.2f} s = {r['rows_per_s']:,.0f} rows/s; peak RSS growth "
                        f"{r['rss_growth_mb']:.0f} MB; {r['mb']:.0f} MB file [targets ≥ 50,000 "
                        f"rows/s, ≤ 100 MB]"
                    )
                    print(f"        then {cpu_reference.describe()}", flush=True)


if __name__ == "__main__":
    main()
