"""Preference data with existing labels → tasks plus judgments by a named external annotator.

Formats (``FORMATS``):

* ``trl``: TRL preference rows, ``{"prompt"?, "chosen", "rejected"}``, as text or
  conversational (lists of ``{role, content}``), with an explicit or implicit prompt (implicit:
  the shared prefix of ``chosen`` and ``rejected``; HH-style ``Human:/Assistant:`` text is split
  into turns). JSONL, JSON, CSV or Parquet.
* ``hh-rlhf``: HH-RLHF transcripts (``{"chosen", "rejected"}``), chosen ranked first.
* ``arena``: Chatbot Arena battles (``model_a``, ``model_b``, ``winner`` ∈ ``model_a`` /
  ``model_b`` / ``tie`` / ``tie (bothbad)``, ``conversation_a`` / ``_b``). Ties become one
  bucket; ``tie (bothbad)`` also sets ``both_bad``.
* ``label-studio``: a Label Studio JSON export of a pairwise project: ``data`` holds the prompt
  and two responses (``answer1``/``answer2``, ``text1``/``text2``, ``response_a``/``_b`` …);
  each non-cancelled annotation gives a judgment from ``pairwise`` (``selected: left|right``)
  and/or ``choices`` (left/right/A/B, ``tie``, ``both bad``) and ``textarea`` (rationale).
  Or a ``List`` + ``Ranker`` project: ``data.items`` holds 2..8 responses ``{id, body|text}``
  (a compare or rank task) and a ``ranker`` result orders all their ids (``choices`` may add
  ``tie`` — all in one bucket — or ``both bad``). Ranker *buckets* say nothing about which
  bucket is better, so they are refused, as is a ranking that leaves out or repeats an item.
  Annotator ``<name>:<completed_by>``.

Like every importer: the whole file is parsed and validated first (``ImportFileError`` naming
``path:line``), then tasks and judgments are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from django.db import transaction
from django.db.models import F

from annotation.datasets import bulk, pg
from annotation.datasets.importers.checks import check_external_ids
from annotation.datasets.importers.label_studio import parse_label_studio
from annotation.datasets.importers.preference_formats import (
    PreferenceSpec,
    parse_arena,
    parse_hh,
    parse_trl,
)
from annotation.datasets.importers.tabular import (
    csv_records,
    detect_format,
    iter_records,
    json_array_records,
)
from annotation.errors import ImportFileError
from annotation.models import AnnotatorProfile, Judgment, Project
from annotation.projects import services as project_services
from annotation.specs import PromptSpec
from common import events
from common.gc_pause import cyclic_gc_paused

FORMATS = ("trl", "hh-rlhf", "arena", "label-studio")


@dataclass(frozen=True)
class ImportResult:
    tasks: int
    judgments: int
    annotators: list[str]


# ---------------------------------------------------------------- TRL


# ---------------------------------------------------------------- HH-RLHF


# ---------------------------------------------------------------- Chatbot Arena


# ---------------------------------------------------------------- Label Studio


# ---------------------------------------------------------------- parse + write


def parse_preferences(
    path: str | Path, fmt: str, *, file_format: str | None = None, ls_keys=None
) -> Iterator[tuple[int, PreferenceSpec]]:
    """``(line, spec)`` for every record; ``file_format`` overrides the suffix (jsonl/json/…)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ImportFileError(path, None, f"unknown format {fmt!r}; choose one of {FORMATS}")
    if fmt == "label-studio":
        records = iter_records(path, file_format) if file_format else json_array_records(path)
        for line, record in records:
            yield line, parse_label_studio(path, line, record, ls_keys)
        return
    parser = {"trl": parse_trl, "hh-rlhf": parse_hh, "arena": parse_arena}[fmt]
    source_format = file_format or detect_format(path)
    records = csv_records(path) if source_format == "csv" else iter_records(path, source_format)
    for line, record in records:
        yield line, parser(path, line, record)


def _annotator(name: str, kind: str, model_ref: str = ""):
    if kind == AnnotatorProfile.Kind.MODEL:
        return project_services.get_or_create_model_annotator(name=name, model_ref=model_ref)
    user = project_services.User.objects.filter(username=name).first()
    if user is not None:
        return user
    return project_services.create_user(
        username=name,
        password=None,
        role=AnnotatorProfile.Role.VIEWER,
        kind=AnnotatorProfile.Kind.HUMAN,
        model_ref=model_ref or f"external:{name}",
    )


@transaction.atomic
def write_preferences(
    *,
    project: Project,
    path: str | Path,
    parsed: Sequence[tuple[int, PreferenceSpec]],
    fmt: str,
    annotator: str,
    annotator_kind: str = AnnotatorProfile.Kind.HUMAN,
    model_ref: str = "",
) -> ImportResult:
    """Write validated specs: tasks through ``bulk.create_tasks``, then judgments."""
    if not annotator or len(annotator) > 140:
        raise ImportFileError(path, None, "a named annotator (≤ 140 characters) is required")
    if annotator_kind not in AnnotatorProfile.Kind.values:
        raise ImportFileError(path, None, f"unknown annotator kind {annotator_kind!r}")
    check_external_ids(project, path, [(line, spec.prompt) for line, spec in parsed])
    names = sorted(
        {
            f"{annotator}:{j.annotator}" if j.annotator else annotator
            for _, spec in parsed
            for j in spec.judgments
        }
    )
    users = {name: _annotator(name, annotator_kind, model_ref) for name in names}
    origin = f"import:{fmt}"
    remaining = iter(spec for _, spec in parsed)
    judged = 0

    def attach(specs: list[PromptSpec], task_ids: list[int], response_ids: list[list[int]]):
        nonlocal judged
        rows = []
        for task_id, ids in zip(task_ids, response_ids, strict=True):
            spec = next(remaining)
            for judgment in spec.judgments:
                name = f"{annotator}:{judgment.annotator}" if judgment.annotator else annotator
                rows.append((
                    task_id, users[name].pk,
                    [[ids[i] for i in bucket] for bucket in judgment.ordering],
                    judgment.strength, judgment.both_bad, judgment.rationale, origin,
                ))  # fmt: skip
        columns = ("task_id", "annotator_id", "ordering", "strength", "both_bad", "rationale",
                   "origin")  # fmt: skip
        if pg.enabled():
            pg.copy_rows(Judgment, columns, rows)
        else:
            Judgment.objects.bulk_create(
                (Judgment(**dict(zip(columns, row, strict=True))) for row in rows),
                batch_size=2000,
            )
        judged += len(rows)

    tasks = bulk.create_tasks(
        project=project,
        specs=[replace(spec.prompt, submitted=len(spec.judgments)) for _, spec in parsed],
        on_batch=attach,
    )
    Project.objects.filter(pk=project.pk).update(judgment_count=F("judgment_count") + judged)
    if judged:
        events.publish("judgments.imported", project_id=project.pk, judgments=judged)
    return ImportResult(tasks=tasks, judgments=judged, annotators=names)


def import_preferences(
    *,
    project: Project,
    path: str | Path,
    fmt: str,
    annotator: str,
    annotator_kind: str = AnnotatorProfile.Kind.HUMAN,
    model_ref: str = "",
    file_format: str | None = None,
    ls_keys: Sequence[str] | None = None,
    limit: int | None = None,
) -> ImportResult:
    """Validate every record of ``path`` (nothing written on any error), then write it all."""
    with cyclic_gc_paused():
        parsed = []
        for line, spec in parse_preferences(path, fmt, file_format=file_format, ls_keys=ls_keys):
            if limit is not None and len(parsed) >= limit:
                break
            parsed.append((line, spec))
        if not parsed:
            raise ImportFileError(path, None, "no records found")
        return write_preferences(
            project=project,
            path=path,
            parsed=parsed,
            fmt=fmt,
            annotator=annotator,
            annotator_kind=annotator_kind,
            model_ref=model_ref,
        )
