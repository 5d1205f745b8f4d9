"""Reading import files: transparent gzip, numbered lines, JSON per line."""

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import ImportFileError


def open_text(path: str | Path):
    """Open a text file for reading, decompressing ``.gz`` files on the fly."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(path, None, "file not found")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for every line of the file."""
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise ImportFileError(path, None, f"not UTF-8 text: {exc}") from exc


def json_lines(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON value) for every non-blank line of a JSONL file."""
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFileError(path, number, f"invalid JSON: {exc.msg}") from exc
