"""Staff and annotator pages at scale on SQLite (issue 16: "no page over ~300 ms at 10k tasks").

    .venv/bin/python benchmarks/pages.py [--tasks 10000] [--annotators 3] [--repeats 15]

Builds a fresh SQLite database in a temporary directory: one project of ``--tasks`` compare
tasks, each judged by ``--annotators`` annotators (a Label Studio export through the real
importer: tasks, judgments, counts and events as an upload makes them), a preference snapshot,
then times every page of the manager's journey through Django's whole request cycle (test
client, session login, middleware, templates) — ``--repeats`` requests each after one warm-up.

Printed per page: median and 90th percentile wall milliseconds and the number of SQL statements.
The floor is ``/healthz/`` through the same client (Django's request cycle doing no page work);
the CPU reference (``cpu_reference.py``) is printed before and after, because this machine's
speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cpu_reference

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORDS = ["the", "model", "answer", "principle", "helpful", "honest", "harmless", "careful", "clear"]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def label_studio_export(path: Path, tasks: int, annotators: int, seed: int = 7) -> None:
    """``tasks`` pairwise Label Studio tasks, each with one annotation per annotator."""
    rng = random.Random(seed)
    rows = []
    for i in range(tasks):
        annotations = [
            {
                "id": i * annotators + a,
                "completed_by": a + 1,
                "was_cancelled": False,
                "lead_time": round(rng.uniform(2, 30), 1),
                "result": [
                    {
                        "from_name": "comparison",
                        "to_name": "answer1",
                        "type": "pairwise",
                        "value": {"selected": "left" if rng.random() < 0.7 else "right"},
                    }
                ],
            }
            for a in range(annotators)
        ]
        rows.append(
            {
                "id": i + 1,
                "data": {
                    "prompt": f"Question {i}: {sentence(rng, 12)}",
                    "answer1": sentence(rng, 40),
                    "answer2": sentence(rng, 40),
                },
                "annotations": annotations,
            }
        )
    path.write_text(json.dumps(rows))


def setup_django(data_dir: Path) -> None:
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'pages.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import django

    django.setup()
    logging.getLogger("axes").setLevel(logging.WARNING)


def build(data_dir: Path, tasks: int, annotators: int) -> dict:
    """Migrate, create the admin, a principle set, the project, its judgments and a snapshot."""
    from django.core.management import call_command

    from annotation.datasets.importers.preferences import import_preferences
    from annotation.datasets.snapshots import create_snapshot
    from annotation.models import Task
    from annotation.principles import services as principle_services
    from annotation.projects import services as project_services
    from annotation.specs import PrincipleSpec

    call_command("migrate", verbosity=0)
    admin = project_services.create_user(username="bench-admin", password="pw", role="admin")
    principle_set = principle_services.create_principle_set(
        name="bench",
        principles=[
            PrincipleSpec(key=f"p{i}", title=f"Principle {i}", text=sentence(random.Random(i), 9))
            for i in range(6)
        ],
        publish=True,
    )
    project = project_services.create_project(
        name="Pages at scale", slug="pages", principle_set=principle_set, task_kinds=["compare"]
    )
    export = data_dir / "label-studio.json"
    label_studio_export(export, tasks, annotators)
    started = time.perf_counter()
    import_preferences(project=project, path=export, fmt="label-studio", annotator="ls")
    seconds = time.perf_counter() - started
    print(f"import: {tasks} tasks × {annotators} judgments in {seconds:.1f} s")
    snapshot = create_snapshot(project=project, kind="preference", run="inline")
    return {
        "admin": admin,
        "project": project,
        "snapshot": snapshot,
        "task": Task.objects.filter(project=project).order_by("-pk").first(),
        "principle_set": principle_set,
    }


def pages(objects: dict, tasks: int) -> list[tuple[str, str]]:
    slug = objects["project"].slug
    last_page = max(1, (tasks + 49) // 50)
    return [
        ("floor: /healthz/", "/healthz/"),
        ("staff home", "/"),
        ("project settings", f"/projects/{slug}/settings/"),
        ("datasets tab", f"/projects/{slug}/datasets/"),
        ("snapshot card", f"/snapshots/{objects['snapshot'].pk}/"),
        ("tasks browser", f"/projects/{slug}/tasks/"),
        ("tasks: last page", f"/projects/{slug}/tasks/?page={last_page}"),
        ("tasks: status filter", f"/projects/{slug}/tasks/?status=complete"),
        ("tasks: agreement ≤ 0.5", f"/projects/{slug}/tasks/?max_agreement=0.5"),
        ("tasks: search", f"/projects/{slug}/tasks/?q=Question+9999"),
        ("task page", f"/tasks/{objects['task'].pk}/"),
        ("quality", f"/quality/{slug}/"),
        ("discretion", f"/quality/{slug}/discretion/"),
        ("principle set", f"/principles/{objects['principle_set'].pk}/"),
        ("principles", "/principles/"),
        ("training", "/training/"),
        ("registry", "/registry/"),
    ]


def time_page(client, url: str, repeats: int) -> tuple[float, float, float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    started = time.perf_counter()
    status = client.get(url).status_code  # the first request also builds what a page caches
    first = 1000 * (time.perf_counter() - started)
    timings = []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(repeats):
            started = time.perf_counter()
            client.get(url)
            timings.append(1000 * (time.perf_counter() - started))
    timings.sort()
    p90 = timings[min(len(timings) - 1, int(0.9 * len(timings)))]
    return first, statistics.median(timings), p90, len(queries) // repeats, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(cpu_reference.describe())
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        setup_django(Path(tmp))
        from django.test import Client

        objects = build(Path(tmp), args.tasks, args.annotators)
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(objects["admin"])
        print(f"\n{'page':<26}{'first ms':>9}{'median ms':>10}{'p90 ms':>9}{'queries':>9}  status")
        for name, url in pages(objects, args.tasks):
            first, median, p90, queries, status = time_page(client, url, args.repeats)
            print(f"{name:<26}{first:>9.1f}{median:>10.1f}{p90:>9.1f}{queries:>9}  {status}")
    print("\n" + cpu_reference.describe())


if __name__ == "__main__":
    main()
