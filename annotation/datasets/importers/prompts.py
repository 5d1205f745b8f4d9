"""Prompt/response import from JSON Lines.

Each line: ``{"messages": [{role, content}, …] | "prompt": str, "responses": [str | {text,
source, label}], "id": str?, "metadata": {}?, "kind": "compare"|"rank"|…?}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from django.db import IntegrityError, transaction

from annotation.datasets import bulk
from annotation.datasets.importers.checks import check_external_ids
from annotation.datasets.importers.tabular import iter_records
from annotation.errors import ImportFileError
from annotation.models import Project, Task, TaskResponse
from annotation.specs import PromptSpec, ResponseSpec
from common.gc_pause import cyclic_gc_paused

ROLES = {"system", "user", "assistant", "tool"}
LABELS = frozenset(TaskResponse.SourceLabel.values)  # the enum property rebuilds its list per call
KINDS = frozenset(Task.Kind.values)
RESPONSES_NEEDED = {"compare": 2, "rate": 1}


def validate_messages(path: Path, line: int, messages: object) -> list[dict]:
    """A non-empty list of ``{role, content}`` with known roles and string content."""
    if not isinstance(messages, list) or not messages:
        raise ImportFileError(path, line, "'messages' must be a non-empty list")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ImportFileError(path, line, f"message {i} must be an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ImportFileError(path, line, f"message {i}: unknown role {role!r}")
        if not isinstance(content, str):
            raise ImportFileError(path, line, f"message {i}: 'content' must be a string")
        clean.append({"role": role, "content": content})
    return clean


def _response(path: Path, line: int, index: int, item: object) -> ResponseSpec:
    if isinstance(item, str):
        return ResponseSpec(text=item)
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        raise ImportFileError(path, line, f"response {index} must be a string or {{'text': str}}")
    label = item.get("label", "")
    if not isinstance(label, str) or label not in LABELS:
        raise ImportFileError(path, line, f"response {index}: unknown label {label!r}")
    return ResponseSpec(
        text=item["text"],
        source=str(item.get("source", ""))[:300],
        label=label,
        generation_params=item.get("generation_params") or {},
    )


def parse_record(path: Path, line: int, record: object) -> PromptSpec:
    if not isinstance(record, dict):
        raise ImportFileError(path, line, "each line must be a JSON object")
    if "messages" in record:
        messages = validate_messages(path, line, record["messages"])
    elif isinstance(record.get("prompt"), str) and record["prompt"].strip():
        messages = [{"role": "user", "content": record["prompt"]}]
    else:
        raise ImportFileError(path, line, "needs 'messages' or a non-empty 'prompt'")
    raw = record.get("responses", [])
    if not isinstance(raw, list):
        raise ImportFileError(path, line, "'responses' must be a list")
    responses = [_response(path, line, i, item) for i, item in enumerate(raw)]
    kind = record.get("kind", "")
    if kind and (not isinstance(kind, str) or kind not in KINDS):
        raise ImportFileError(path, line, f"unknown task kind {kind!r}")
    spec = PromptSpec(
        messages=messages,
        responses=responses,
        external_id=str(record.get("id", ""))[:200],
        metadata=record.get("metadata") or {},
        kind=kind,
    )
    task_kind = bulk.task_kind_for(spec)
    needed = RESPONSES_NEEDED.get(task_kind)
    if needed is not None and len(responses) != needed:
        raise ImportFileError(path, line, f"a {kind} task needs exactly {needed} responses")
    if task_kind == "rank" and not 3 <= len(responses) <= 8:
        raise ImportFileError(path, line, "a rank task needs 3 to 8 responses")
    return spec


def parse_prompt_file(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, PromptSpec]]:
    """``(line, spec)`` from any supported tabular format, validated record by record."""
    path = Path(path)
    for line, record in iter_records(path, fmt):
        yield line, parse_record(path, line, record)


@transaction.atomic
def import_prompts(*, project: Project, path: str | Path, fmt: str | None = None) -> int:
    """Validate every record of a JSONL / JSON / CSV / Parquet file and create its tasks.

    Records are parsed while the earlier ones are written (``create_tasks`` reads ahead), in one
    transaction: an error on any line rolls the whole import back. A record id repeated in the
    file or already in the project trips the database's unique constraint, and is then named
    by its line."""
    parsed: list[tuple[int, PromptSpec]] = []

    def specs() -> Iterator[PromptSpec]:
        for line, spec in parse_prompt_file(path, fmt):
            parsed.append((line, spec))
            yield spec

    with cyclic_gc_paused():
        try:
            count = bulk.create_tasks(project=project, specs=specs())
        except IntegrityError:
            check_external_ids(project, path, parsed)
            raise
    if not count:
        raise ImportFileError(path, None, "no records found")
    return count


@transaction.atomic
def import_records(*, project: Project, records: list) -> list[int]:
    """Create prompts, responses and a task each from records in the JSONL import format (the
    API's bulk endpoint), all or nothing; an error names the record (1-based). Returns the
    new task ids in the records' order."""
    specs = [parse_record("record", n, record) for n, record in enumerate(records, start=1)]
    check_external_ids(project, "record", list(enumerate(specs, start=1)))
    task_ids: list[int] = []
    bulk.create_tasks(
        project=project, specs=specs, on_batch=lambda _specs, ids, _responses: task_ids.extend(ids)
    )
    return task_ids
