"""Checks that need the whole file (or the database) before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from annotation.datasets import pg
from annotation.errors import ImportFileError
from annotation.models import Project, Prompt
from annotation.specs import PromptSpec


def check_external_ids(
    project: Project, path: str | Path, parsed: Sequence[tuple[int, PromptSpec]]
) -> None:
    """Record ids must be unique in the file and new to the project (names the line)."""
    first_line: dict[str, int] = {}
    for line, spec in parsed:
        if not spec.external_id:
            continue
        if spec.external_id in first_line:
            raise ImportFileError(
                path,
                line,
                f"id {spec.external_id!r} repeats line {first_line[spec.external_id]}",
            )
        first_line[spec.external_id] = line
    ids = list(first_line)
    if not ids:
        return
    if pg.enabled():
        clashes = pg.existing_external_ids(project.pk, ids)
    else:
        clashes = []
        for start in range(0, len(ids), 500):
            found = (
                Prompt.objects.filter(project=project, external_id__in=ids[start : start + 500])
                .values_list("external_id", flat=True)
                .first()
            )
            if found is not None:
                clashes.append(found)
                break
    if clashes:
        clash = clashes[0]
        raise ImportFileError(
            path, first_line[clash], f"id {clash!r} is already in project {project.slug}"
        )
