"""HH-RLHF transcripts (``{"chosen": str, "rejected": str}`` per line) → compare tasks.

Turns introduced by ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` become messages; the shared context
up to the last assistant turn is the prompt; the two final assistant turns are the responses,
labelled chosen / rejected. ``external_id`` is the 0-based line number (the row id that the
discretion paper's files use).
"""

import re
from collections.abc import Iterator
from pathlib import Path

from django.db import transaction

from annotation.datasets import bulk
from annotation.errors import ImportFileError
from annotation.files import json_lines
from annotation.models import Project, TaskResponse
from annotation.specs import PromptSpec, ResponseSpec

TURN = re.compile(r"\n\n(Human|Assistant):")
ROLE = {"Human": "user", "Assistant": "assistant"}
SOURCE = "external:hh-rlhf"


def split_transcript(transcript: str) -> list[dict]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` → ``[{user: hi}, {assistant: hello}]``."""
    parts = TURN.split(transcript)
    if parts[0].strip():
        raise ValueError("text before the first Human:/Assistant: turn")
    return [
        {"role": ROLE[speaker], "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def parse_pair(path: Path, line: int, record: object) -> PromptSpec:
    if not isinstance(record, dict):
        raise ImportFileError(path, line, "each line must be a JSON object")
    texts = {}
    for side in ("chosen", "rejected"):
        value = record.get(side)
        if not isinstance(value, str) or not value.strip():
            raise ImportFileError(path, line, f"'{side}' must be a non-empty transcript string")
        try:
            texts[side] = split_transcript(value)
        except ValueError as exc:
            raise ImportFileError(path, line, f"'{side}': {exc}") from exc
        if len(texts[side]) < 2 or texts[side][-1]["role"] != "assistant":
            raise ImportFileError(path, line, f"'{side}' must end with an Assistant turn")
    chosen, rejected = texts["chosen"], texts["rejected"]
    metadata = {"dataset": "hh-rlhf", "row_id": line - 1}
    if chosen[:-1] != rejected[:-1]:
        metadata["rejected_context"] = rejected[:-1]
    return PromptSpec(
        messages=chosen[:-1],
        responses=[
            ResponseSpec(chosen[-1]["content"], SOURCE, TaskResponse.SourceLabel.CHOSEN),
            ResponseSpec(rejected[-1]["content"], SOURCE, TaskResponse.SourceLabel.REJECTED),
        ],
        external_id=str(line - 1),
        metadata=metadata,
        kind="compare",
    )


def parse_hh_rlhf(path: str | Path, limit: int | None = None) -> Iterator[PromptSpec]:
    path = Path(path)
    for count, (line, record) in enumerate(json_lines(path)):
        if limit is not None and count >= limit:
            return
        yield parse_pair(path, line, record)


@transaction.atomic
def import_hh_rlhf(*, project: Project, path: str | Path, limit: int | None = None) -> int:
    """Validate the whole file, then create one compare task per pair; returns the task count."""
    specs = list(parse_hh_rlhf(path, limit))
    if not specs:
        raise ImportFileError(path, None, "no records found")
    return bulk.create_tasks(project=project, specs=specs)
