"""Dataset snapshots: frozen, content-hashed exports with their filters and provenance.

``create_snapshot`` validates the options, freezes the judgment / demonstration id horizon and
either builds inline (small) or queues ``annotation.build_snapshot`` on Celery (large).
``build_snapshot`` streams rows task batch by task batch (``values_list`` queries, bounded
memory) through the pure shapers in ``annotation.datasets.exports`` into a temporary file under
``ARTIFACT_ROOT/snapshots``, hashes it, renames it into place and records row counts,
per-annotator counts (HMAC pseudonyms under ``PSEUDONYM_KEY``) and the discretion summary.
A build never stays stuck: any error marks the snapshot failed and removes its files; the
building process holds a ``ProcessLock``, so a builder that died (SIGKILL) is told apart from
a live one: a redelivered task builds the snapshot again, ``fail_orphaned_builds`` (run when a
worker starts) marks it failed.
``export_stream`` streams the same rows as JSONL or CSV over HTTP, at any size."""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from annotation.datasets.exports.writers import (
    CHUNK_ROWS,
    csv_columns,
    encode_csv,
    encode_lines,
    open_writer,
    schema_for,
)
from annotation.datasets.filters import (
    SnapshotFilters,
    from_record,
    frozen_record,
    prepare,
)
from annotation.datasets.loaders import BATCH_JUDGMENTS, STREAM_BATCH_JUDGMENTS, RowStream
from annotation.datasets.shards import Shard, shard_ranges
from annotation.models import (
    DatasetSnapshot,
    Demonstration,
    Judgment,
    Project,
)
from common import background, events
from common.errors import DomainError
from common.gc_pause import cyclic_gc_paused
from common.process_lock import ProcessLock

logger = logging.getLogger(__name__)


FORMATS = tuple(DatasetSnapshot.Format.values)


def inline_limit() -> int:
    """Snapshots of at most this many judgments are built in the request; larger by Celery."""
    return int(getattr(settings, "SNAPSHOT_INLINE_MAX_JUDGMENTS", 20_000))


def _freeze(project: Project, f: SnapshotFilters, kind: str) -> SnapshotFilters:
    if kind == "sft":
        top = Demonstration.objects.filter(prompt__project=project).aggregate(m=Max("id"))["m"]
        return SnapshotFilters(**{**f.__dict__, "max_demonstration_id": top or 0})
    top = Judgment.objects.filter(task__project=project).aggregate(m=Max("id"))["m"]
    return SnapshotFilters(**{**f.__dict__, "max_judgment_id": top or 0})


def create_snapshot(
    *,
    project: Project,
    kind: str,
    fmt: str = DatasetSnapshot.Format.JSONL,
    aggregation: str = "raw",
    filters: dict | None = None,
    name: str = "",
    created_by=None,
    run: str = "auto",
) -> DatasetSnapshot:
    """Record a snapshot and build it: ``run="inline"`` now, ``"async"`` on Celery, ``"auto"``
    inline when it reads at most ``SNAPSHOT_INLINE_MAX_JUDGMENTS`` records."""
    if fmt not in FORMATS:
        raise DomainError(f"format must be one of {', '.join(FORMATS)}")
    if run not in {"auto", "inline", "async"}:
        raise DomainError("run must be auto, inline or async")
    options, f, _ = prepare(project=project, kind=kind, aggregation=aggregation, filters=filters)
    f = _freeze(project, f, kind)
    snapshot = DatasetSnapshot.objects.create(
        project=project,
        principle_set=project.principle_set,
        name=name[:200],
        kind=kind,
        format=fmt,
        filters=frozen_record(project, options, f),
        aggregation=aggregation,
        created_by=created_by,
    )
    inline = run == "inline" or (
        run == "auto" and RowStream(project, options, f).total() <= inline_limit()
    )
    if inline:
        return build_snapshot(snapshot_id=snapshot.pk)
    transaction.on_commit(
        partial(
            background.send_or_fail,
            "annotation.build_snapshot",
            snapshot.pk,
            what=f"snapshot {snapshot.pk}",
            fail=partial(_fail, snapshot.pk),
        )
    )
    return snapshot


@transaction.atomic
def create_principle_snapshots(
    *,
    project: Project,
    keys: list[str] | None = None,
    filters: dict | None = None,
    name: str = "",
    **options,
) -> list[DatasetSnapshot]:
    """One per-principle preference snapshot for each of ``keys`` (default: every principle of
    the project's set, in document order), otherwise alike (``create_snapshot``'s options)."""
    if keys is None:
        keys = list(
            project.principle_set.principles.order_by("position").values_list("key", flat=True)
        )
    stem = name or "principle"
    return [
        create_snapshot(
            project=project,
            kind="preference",
            filters={**(filters or {}), "principle": key},
            name=f"{stem}-{key}",
            **options,
        )
        for key in keys
    ]


def artifact_file(snapshot: DatasetSnapshot) -> Path:
    return Path(settings.ARTIFACT_ROOT) / snapshot.artifact_path


def build_batch() -> int:
    """Judgments per read batch of a snapshot build (memory against round trips)."""
    return int(getattr(settings, "SNAPSHOT_BATCH_JUDGMENTS", BATCH_JUDGMENTS))


WORKER_LOST = (
    "the process building this snapshot stopped before it was complete (killed or lost); "
    "create the snapshot again"
)


def _folder() -> Path:
    return Path(settings.ARTIFACT_ROOT) / "snapshots"


def _lock(folder: Path, snapshot_id: int) -> ProcessLock:
    """Held by the process building the snapshot; left behind (unheld) if that process dies."""
    return ProcessLock(folder / f".snapshot-{snapshot_id}.lock")


def _remove_partials(folder: Path, snapshot_id: int) -> None:
    """Whatever an unfinished build of the snapshot left: its temporary file and shard parts,
    or a complete file it renamed but did not get to record."""
    for pattern in (f".snapshot-{snapshot_id}-*", f"snapshot-{snapshot_id}-*"):
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def _fail(snapshot_id: int, message: str) -> bool:
    """Mark a building snapshot failed; False when it was no longer building."""
    return bool(
        DatasetSnapshot.objects.filter(
            pk=snapshot_id, status=DatasetSnapshot.Status.BUILDING
        ).update(status=DatasetSnapshot.Status.FAILED, error=message[:5000])
    )


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, DomainError | ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def build_snapshot(*, snapshot_id: int) -> DatasetSnapshot:
    """Stream the rows into a temporary file, hash it, rename it into ``ARTIFACT_ROOT``, and
    only then mark the snapshot ready. Any error marks it failed with a message and removes its
    files. The building process holds the snapshot's lock: a snapshot already being built is
    left alone, one whose builder died is started again from scratch (its rows are frozen)."""
    snapshot = DatasetSnapshot.objects.select_related("project__principle_set").get(pk=snapshot_id)
    if snapshot.status != DatasetSnapshot.Status.BUILDING:
        return snapshot
    folder = _folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = _lock(folder, snapshot.pk)
        locked = lock.acquire()
    except Exception as exc:  # an unusable ARTIFACT_ROOT
        logger.exception("snapshot %s failed", snapshot.pk)
        _fail(snapshot.pk, f"cannot write under ARTIFACT_ROOT: {_error_message(exc)}")
        snapshot.refresh_from_db()
        return snapshot
    if not locked:  # another live process is building it
        return snapshot
    try:
        snapshot.refresh_from_db()
        ready = False
        if snapshot.status == DatasetSnapshot.Status.BUILDING:
            _remove_partials(folder, snapshot.pk)  # of a builder that died
            ready = _write(snapshot, folder)
    except BaseException:  # not even recorded (database lost): left for fail_orphaned_builds
        lock.release()
        raise
    lock.release(remove=True)
    snapshot.refresh_from_db()
    if ready:
        events.publish(
            "snapshot.ready",
            snapshot_id=snapshot.pk,
            project_id=snapshot.project_id,
            kind=snapshot.kind,
            format=snapshot.format,
            row_count=snapshot.row_count,
            sha256=snapshot.sha256,
            size_bytes=snapshot.size_bytes,
            download=f"/api/v1/snapshots/{snapshot.pk}/download/",
        )
    return snapshot


def _write(snapshot: DatasetSnapshot, folder: Path) -> bool:
    """Build the file (under the snapshot's lock); whether the snapshot is now ready."""
    extension = "jsonl" if snapshot.format == DatasetSnapshot.Format.JSONL else "parquet"
    temporary = folder / f".snapshot-{snapshot.pk}-{uuid.uuid4().hex}.{extension}.part"
    writer = None
    final = None
    shards: list[Shard] = []
    try:
        options, f = from_record(snapshot)
        total_judgments = RowStream(snapshot.project, options, f).total()
        total = max(total_judgments, 1)
        ranges = shard_ranges(snapshot.project, options, f, total_judgments)
        stream = RowStream(snapshot.project, options, f, task_range=ranges[0], target=build_batch())
        schema = schema_for(options.kind, options.style, options.prompt_style)
        writer = open_writer(snapshot.format, temporary, schema)
        shards = [
            Shard.start(snapshot, folder, index, task_range)
            for index, task_range in enumerate(ranges[1:], start=1)
        ]
        reported = time.monotonic()
        with cyclic_gc_paused():
            for rows in stream:
                writer.write_rows(rows, consume=True)
                if time.monotonic() - reported > 1.0:
                    reported = time.monotonic()
                    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
                        progress=min(stream.processed * len(ranges) / total, 0.99)
                    )
        for shard in shards:  # in task order: the file reads as one sequential export
            stream.merge(shard.wait())
            if snapshot.format == DatasetSnapshot.Format.JSONL:
                writer.append_file(shard.part)
            else:
                writer.append_arrow(shard.part)
            shard.cleanup()
        digest = writer.close()
        writer = None
        final = folder / f"snapshot-{snapshot.pk}-{digest[:12]}.{extension}"
        os.replace(temporary, final)  # complete: only now under its final name
        marked = DatasetSnapshot.objects.filter(
            pk=snapshot.pk, status=DatasetSnapshot.Status.BUILDING
        ).update(
            status=DatasetSnapshot.Status.READY,
            progress=1.0,
            row_count=stream.row_count,
            sha256=digest,
            size_bytes=final.stat().st_size,
            artifact_path=str(final.relative_to(settings.ARTIFACT_ROOT)),
            per_annotator_counts=stream.per_annotator_counts(),
            discretion_summary=stream.discretion_summary(),
            error="",
        )
        if not marked:
            raise RuntimeError("the snapshot stopped building while it was written")
        return True
    except BaseException as exc:  # recorded, files removed; Ctrl-C and exits go on
        logger.exception("snapshot %s failed", snapshot.pk)
        for shard in shards:
            shard.cleanup(kill=True)
        if writer is not None:
            writer.abort()
        temporary.unlink(missing_ok=True)
        if final is not None:
            final.unlink(missing_ok=True)
        _fail(snapshot.pk, _error_message(exc))
        if not isinstance(exc, Exception):
            raise
        return False


def fail_orphaned_builds() -> int:
    """Mark failed every snapshot still building whose builder died (SIGKILL, the OOM killer, a
    lost host: its lock file is left and nobody holds it) and remove its partial files. Run when
    a Celery worker starts. Returns how many were failed."""
    folder = _folder()
    failed = 0
    building = DatasetSnapshot.objects.filter(status=DatasetSnapshot.Status.BUILDING)
    for snapshot_id in building.values_list("pk", flat=True):
        lock = _lock(folder, snapshot_id)
        if not lock.take_over():  # not started yet, or a live process builds it
            continue
        try:
            if _fail(snapshot_id, WORKER_LOST):
                _remove_partials(folder, snapshot_id)
                failed += 1
                logger.warning("snapshot %s: %s", snapshot_id, WORKER_LOST)
        finally:
            lock.release(remove=True)
    return failed


STREAM_FORMATS = ("jsonl", "csv")


def stream_limit() -> int:
    """At most this many records in a streamed export (0, the default: no limit)."""
    return int(getattr(settings, "EXPORT_STREAM_MAX_JUDGMENTS", 0))


def export_stream(
    *,
    project: Project,
    kind: str,
    aggregation: str = "raw",
    filters: dict | None = None,
    fmt: str = "jsonl",
) -> Iterator[bytes]:
    """An export streamed over HTTP (no snapshot is recorded): JSONL, or CSV with a header row
    (``writers.csv_columns``). Options are checked and the first batch read now (errors come
    before a response starts, as ``DomainError`` for bad options); the rest is read as the
    chunks are asked for, in small keyset-paginated batches in the caller's thread, so memory
    stays flat whatever the export's size."""
    if fmt not in STREAM_FORMATS:
        raise DomainError(f"file_format must be one of {', '.join(STREAM_FORMATS)}")
    options, f, _ = prepare(project=project, kind=kind, aggregation=aggregation, filters=filters)
    f = _freeze(project, f, kind)
    stream = RowStream(project, options, f, target=STREAM_BATCH_JUDGMENTS, prefetch=False)
    limit = stream_limit()
    if limit and stream.total() > limit:
        raise DomainError(f"more than {limit} records: create a snapshot instead")
    if fmt == "jsonl":
        chunks = _chunks(stream, partial(encode_lines, consume=True))
    else:
        columns = csv_columns(schema_for(options.kind, options.style, options.prompt_style))
        header = encode_csv([], columns, header=True)
        chunks = _chunks(stream, partial(encode_csv, columns=columns), header)
    first = next(chunks, b"")  # the first batch is read now: its errors precede the response
    return itertools.chain([first], chunks)


def _chunks(stream: RowStream, encode, header: bytes = b"") -> Iterator[bytes]:
    for rows in stream:
        for start in range(0, len(rows), CHUNK_ROWS):
            yield header + encode(rows[start : start + CHUNK_ROWS])
            header = b""
    if header:  # no rows: the header alone
        yield header
