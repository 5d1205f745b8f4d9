"""Reading import files: transparent gzip, numbered lines, JSON per line."""

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import orjson

from annotation.errors import ImportFileError


def open_text(path: str | Path):
    """Open a text file for reading, decompressing ``.gz`` files on the fly."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(path, None, "file not found")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def open_binary(path: str | Path):
    """Open a file for reading bytes, decompressing ``.gz`` files on the fly."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(path, None, "file not found")
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for every line of the file."""
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise ImportFileError(path, None, f"not UTF-8 text: {exc}") from exc


def json_lines(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON value) for every non-blank line of a JSONL file.

    Lines are read as bytes and decoded by orjson (which also checks they are UTF-8)."""
    loads = orjson.loads
    with open_binary(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
            if line.isspace() or not line:
                continue
            try:
                value = loads(line)
            except orjson.JSONDecodeError as exc:
                raise ImportFileError(path, number, _json_error(line, exc)) from exc
            if _may_hold_a_wide_integer(value):
                value = json.loads(line)  # exact: orjson reads integers beyond 64 bits as floats
            yield number, value


def _may_hold_a_wide_integer(value: object) -> bool:
    """Whether a decoded value holds an integral float beyond 64-bit range anywhere (rare; a
    walk costs ~1 µs per record)."""
    kind = type(value)
    if kind is float:
        return value.is_integer() and abs(value) >= 2.0**63
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return False
    return any(type(item) in _NESTED and _may_hold_a_wide_integer(item) for item in value)


_NESTED = (float, dict, list)


def _json_error(line: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8 text: {bad.reason}"
    return f"invalid JSON: {exc.msg}"
