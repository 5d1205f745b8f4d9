"""Large snapshots written by parallel subprocess shards."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from annotation.datasets import pg
from annotation.datasets.exports.records import (
    ExportOptions,
)
from annotation.datasets.exports.writers import schema_for
from annotation.datasets.filters import SnapshotFilters, from_record
from annotation.datasets.loaders import RowStream
from annotation.models import (
    DatasetSnapshot,
    Judgment,
    Project,
    Task,
)
from common.gc_pause import cyclic_gc_paused


def parallel_workers() -> int:
    return int(getattr(settings, "SNAPSHOT_WORKERS", 1))


def shard_ranges(
    project: Project, options: ExportOptions, f: SnapshotFilters, judgments: int
) -> list[tuple[int, int | None]]:
    workers = parallel_workers()
    minimum = int(getattr(settings, "SNAPSHOT_PARALLEL_MIN_JUDGMENTS", 200_000))
    if (
        workers < 2
        or judgments < minimum
        or options.kind == "sft"
        or not pg.enabled()
        or connection.in_atomic_block  # workers could not see uncommitted rows
    ):
        return [(0, None)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY j.task_id) "
            f"FROM {Judgment._meta.db_table} j JOIN {Task._meta.db_table} t "
            f"ON t.id = j.task_id WHERE t.project_id = %s AND j.id <= %s",
            [[i / workers for i in range(1, workers)], project.pk, f.max_judgment_id or 0],
        )
        bounds = sorted(set(cursor.fetchone()[0] or []))
    edges = [0, *bounds]
    return [(low, high) for low, high in zip(edges, [*bounds, None], strict=True)]


def database_url() -> str:
    """A ``DATABASE_URL`` for the database this process uses (for shard workers)."""
    from urllib.parse import quote

    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="") + (f":{quote(s['PASSWORD'], safe='')}"
                                             if s["PASSWORD"] else "")  # fmt: skip
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Shard:
    """A worker process exporting one task range of a snapshot into a part file."""

    def __init__(self, process, part: Path, output: Path, log: Path) -> None:
        self.process, self.part, self.output, self.log = process, part, output, log

    @classmethod
    def start(cls, snapshot: DatasetSnapshot, folder: Path, index: int, task_range) -> Shard:
        import subprocess
        import sys

        stem = folder / f".snapshot-{snapshot.pk}-{uuid.uuid4().hex}-shard{index}"
        suffix = ".jsonl" if snapshot.format == DatasetSnapshot.Format.JSONL else ".arrow"
        part, output, log = (stem.with_suffix(x) for x in (suffix, ".json", ".log"))
        after, until = task_range
        command = [
            sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "export_shard",
            str(snapshot.pk), "--after", str(after), "--out", str(part), "--summary", str(output),
        ]  # fmt: skip
        if until is not None:
            command += ["--until", str(until)]
        env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "0"}
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                command, cwd=settings.BASE_DIR, env=env, stdout=log_file, stderr=log_file
            )
        return cls(process, part, output, log)

    def wait(self) -> dict:
        import json

        if self.process.wait() != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"export shard failed (exit {self.process.returncode}): {tail}")
        return json.loads(self.output.read_text())

    def cleanup(self, kill: bool = False) -> None:
        if kill and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for path in (self.part, self.output, self.log):
            path.unlink(missing_ok=True)


def write_shard(*, snapshot_id: int, after: int, until: int | None, out: str | Path) -> dict:
    """Export one task range of a snapshot into ``out`` (run by ``manage.py export_shard``)."""
    from annotation.datasets.exports.writers import ArrowShardWriter, JsonlWriter

    snapshot = DatasetSnapshot.objects.select_related("project__principle_set").get(pk=snapshot_id)
    options, f = from_record(snapshot)
    stream = RowStream(snapshot.project, options, f, task_range=(after, until))
    schema = schema_for(options.kind, options.style, options.prompt_style)
    if snapshot.format == DatasetSnapshot.Format.JSONL:
        writer = JsonlWriter(out)
    else:
        writer = ArrowShardWriter(out, schema)
    try:
        with cyclic_gc_paused():
            for rows in stream:
                writer.write_rows(rows, consume=True)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {"summary": stream.shaper.summary.state(), "processed": stream.processed}
