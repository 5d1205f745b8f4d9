"""Import jobs: an uploaded file imported inline (small) or by a Celery worker (large).

Progress: the parse-and-validate pass reports 0 → 0.5 by line; the write happens in one
transaction (stage ``writing``), then 1.0. Nothing is written if any record is malformed; the
job's error names ``<original file name>:<line>``. Any other exception fails the job too, with a
readable message (its traceback kept on the job for staff): a job never stays running.
"""

from __future__ import annotations

import re
import traceback
import uuid
from collections.abc import Iterable, Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.datasets import bulk
from annotation.datasets.importers import preferences
from annotation.datasets.importers.checks import check_external_ids
from annotation.datasets.importers.prompts import parse_prompt_file
from annotation.datasets.importers.tabular import decompressed_size, detect_format
from annotation.errors import ImportFileError, UploadTooLargeError
from annotation.files import open_binary
from annotation.models import AnnotatorProfile, ImportJob, Project
from common import background
from common.errors import DomainError
from common.gc_pause import cyclic_gc_paused
from common.limits import upload_max_bytes

PROMPT_FORMATS = ("jsonl", "json", "csv", "parquet")
FORMATS = ("prompts", *preferences.FORMATS)
OPTION_KEYS = {"annotator", "annotator_kind", "model_ref", "file_format", "ls_keys"}


def inline_limit() -> int:
    """Uploads up to this many bytes are imported in the request; larger ones by Celery."""
    return int(getattr(settings, "IMPORT_INLINE_MAX_BYTES", 2 * 1024 * 1024))


def validate_options(fmt: str, options: dict) -> dict:
    if fmt not in FORMATS:
        raise DomainError(f"format must be one of {', '.join(FORMATS)}")
    unknown = set(options) - OPTION_KEYS
    if unknown:
        raise DomainError(f"unknown options: {', '.join(sorted(unknown))}")
    clean = {k: v for k, v in options.items() if v not in (None, "")}
    file_format = clean.get("file_format")
    if file_format is not None and file_format not in PROMPT_FORMATS:
        raise DomainError(f"file_format must be one of {', '.join(PROMPT_FORMATS)}")
    if fmt != "prompts":
        name = str(clean.get("annotator", "")).strip()
        if not name or len(name) > 140:
            raise DomainError("preference imports need a named 'annotator' (≤ 140 characters)")
        kind = clean.get("annotator_kind", AnnotatorProfile.Kind.HUMAN)
        if kind not in AnnotatorProfile.Kind.values:
            raise DomainError("annotator_kind must be human or model")
        clean["annotator"], clean["annotator_kind"] = name, kind
    ls_keys = clean.get("ls_keys")
    if ls_keys is not None:
        keys = ls_keys.split(",") if isinstance(ls_keys, str) else ls_keys
        if not isinstance(keys, list) or len(keys) != 3:
            raise DomainError("ls_keys must name three data keys: prompt,left,right")
        clean["ls_keys"] = [str(k).strip() for k in keys]
    return clean


def create_import_job(
    *, project: Project, upload, fmt: str, options: dict | None = None, created_by=None
) -> ImportJob:
    """Store the uploaded file under ``MEDIA_ROOT/imports`` and record a queued job. A file
    larger than ``UPLOAD_MAX_BYTES`` is refused (413) as it is copied, leaving nothing behind."""
    options = validate_options(fmt, dict(options or {}))
    original = Path(getattr(upload, "name", "upload") or "upload").name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", original)[-120:] or "upload"
    relative = Path("imports") / f"{uuid.uuid4().hex}-{safe}"
    target = Path(settings.MEDIA_ROOT) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    limit, written = upload_max_bytes(), 0
    try:
        with target.open("wb") as handle:
            for chunk in upload.chunks():
                written += len(chunk)
                if written > limit:
                    raise UploadTooLargeError(limit)
                handle.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return ImportJob.objects.create(
        project=project,
        format=fmt,
        file_path=str(relative),
        original_name=original[:300],
        options=options,
        created_by=created_by,
    )


def _count_lines(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return max(pq.ParquetFile(path).metadata.num_rows, 1)
        except Exception:
            return 1
    lines = 0
    with open_binary(path) as handle:  # a bad or oversized .gz fails here, naming the limit
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(lines, 1)


def _with_progress(parsed: Iterable, total: int, report) -> Iterator:
    for index, item in enumerate(parsed):
        if index % 2000 == 0:
            report(min(item[0] / total, 1.0) * 0.5)
        yield item


def import_file(*, project: Project, path: str | Path, fmt: str, options: dict, report=None):
    """Parse and validate all of ``path``, then write it in one transaction.
    Returns ``(tasks, judgments)``."""
    path = Path(path)
    report = report or (lambda fraction, stage="validating": None)
    file_format = options.get("file_format")
    if fmt == "prompts":
        container = file_format or detect_format(path)
        total = _count_lines(path, container)
        parsed = list(_with_progress(parse_prompt_file(path, container), total, report))
        if not parsed:
            raise ImportFileError(path, None, "no records found")
        report(0.5, "writing")
        with transaction.atomic():
            check_external_ids(project, path, parsed)
            tasks = bulk.create_tasks(project=project, specs=[spec for _, spec in parsed])
        return tasks, 0
    container = file_format or ("json" if fmt == "label-studio" else detect_format(path))
    parsed = list(
        _with_progress(
            preferences.parse_preferences(
                path, fmt, file_format=file_format, ls_keys=options.get("ls_keys")
            ),
            _count_lines(path, container),
            report,
        )
    )
    if not parsed:
        raise ImportFileError(path, None, "no records found")
    report(0.5, "writing")
    result = preferences.write_preferences(
        project=project,
        path=path,
        parsed=parsed,
        fmt=fmt,
        annotator=options["annotator"],
        annotator_kind=options.get("annotator_kind", AnnotatorProfile.Kind.HUMAN),
        model_ref=options.get("model_ref", ""),
    )
    return result.tasks, result.judgments


def start_import_job(job: ImportJob, *, size: int) -> ImportJob:
    """Import an upload of ``size`` bytes now when it is small (``inline_limit``, measured on
    what it decompresses to: the caller gets the finished job), else queue
    ``annotation.run_import_job`` for a worker once the caller's transaction commits (the job
    stays queued)."""
    limit = inline_limit()
    if size <= limit:
        path = Path(settings.MEDIA_ROOT) / job.file_path
        fmt = job.options.get("file_format") or detect_format(path)
        with suppress(ImportFileError):  # unreadable: the import fails at once, naming why
            size = decompressed_size(path, fmt, stop_after=limit)
    if size <= limit:
        return run_import_job(job_id=job.pk)
    transaction.on_commit(partial(background.send, "annotation.run_import_job", job.pk))
    return job


def run_import_job(*, job_id: int) -> ImportJob:
    """Run a queued job; failures are recorded on the job (naming the original file)."""
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    if job.status in {ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED}:
        return job
    path = Path(settings.MEDIA_ROOT) / job.file_path
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, stage="validating")

    def report(fraction: float, stage: str = "validating") -> None:
        ImportJob.objects.filter(pk=job.pk).update(progress=round(fraction, 4), stage=stage)

    try:
        with cyclic_gc_paused():
            tasks, judgments = import_file(
                project=job.project, path=path, fmt=job.format, options=job.options, report=report
            )
    except Exception as exc:  # any failure ends the job (never left running)
        message = failure_message(exc, path).replace(str(path), job.original_name or path.name)
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED, stage="failed", error=message[:5000],
            traceback="" if isinstance(exc, DomainError) else traceback.format_exc()[-8000:],
            finished_at=timezone.now(),
        )  # fmt: skip
    else:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.SUCCEEDED, stage="done", progress=1.0, task_count=tasks,
            judgment_count=judgments, records=tasks, finished_at=timezone.now(),
        )  # fmt: skip
    finally:
        path.unlink(missing_ok=True)
    job.refresh_from_db()
    return job


def failure_message(exc: Exception, path: Path) -> str:
    """What a failed import tells its user: a domain error's own message, else the kind of
    problem in words, naming the file (the traceback is kept apart, for staff)."""
    if isinstance(exc, DomainError):
        return str(exc)
    if isinstance(exc, RecursionError):
        reason = "nested too deeply to read"
    elif isinstance(exc, UnicodeEncodeError):
        reason = f"holds text that cannot be stored as UTF-8 ({exc.reason})"
    elif isinstance(exc, UnicodeError):
        reason = f"not UTF-8 text ({exc})"
    elif isinstance(exc, MemoryError):
        reason = "too large to import in memory"
    else:
        reason = f"the import failed unexpectedly ({type(exc).__name__}: {exc})"
    return f"{path}: {reason}"
