"""Reading import files: transparent gzip within size limits, numbered lines, JSON per line.

Limits (settings): ``UPLOAD_MAX_BYTES`` on the file as stored, ``IMPORT_MAX_DECOMPRESSED_BYTES``
and ``IMPORT_MAX_COMPRESSION_RATIO`` on what a ``.gz`` file decompresses to (checked while it
decompresses: a bomb is refused before it fills memory), ``JSON_MAX_DEPTH`` on each record."""

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
from django.conf import settings

from annotation.errors import ImportFileError
from common.limits import depth_message, json_max_depth, upload_max_bytes, value_depth

# Below this many decompressed bytes the compression ratio is not checked (small files of
# repeated text compress far beyond any sane ratio and cost nothing).
RATIO_FLOOR_BYTES = 16 * 1024**2


def checked_file(path: str | Path) -> Path:
    """``path``, refused unless it is a file within ``UPLOAD_MAX_BYTES``."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(path, None, "file not found")
    limit = upload_max_bytes()
    if path.stat().st_size > limit:
        raise ImportFileError(path, None, f"larger than {limit} bytes (UPLOAD_MAX_BYTES)")
    return path


def decompressed_limit(path: Path) -> tuple[int, str]:
    """How many bytes ``path`` may decompress to, and the setting that says so."""
    most = int(getattr(settings, "IMPORT_MAX_DECOMPRESSED_BYTES", 4 * 1024**3))
    ratio = int(getattr(settings, "IMPORT_MAX_COMPRESSION_RATIO", 100))
    by_ratio = max(ratio * path.stat().st_size, RATIO_FLOOR_BYTES)
    if by_ratio < most:
        return by_ratio, f"more than {ratio} times its size (IMPORT_MAX_COMPRESSION_RATIO)"
    return most, f"more than {most} bytes (IMPORT_MAX_DECOMPRESSED_BYTES)"


class _CappedGzip(io.RawIOBase):
    """A ``.gz`` file's content, refused (``ImportFileError``) once it decompresses past its
    limit, and when it is not valid gzip data."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._limit, self._why = decompressed_limit(path)
        self._read = 0
        self._gzip = gzip.GzipFile(path, "rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            count = self._gzip.readinto(buffer)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImportFileError(self._path, None, f"not a valid gzip file: {exc}") from exc
        self._read += count
        if self._read > self._limit:
            raise ImportFileError(self._path, None, f"decompresses to {self._why}")
        return count

    def close(self) -> None:
        self._gzip.close()
        super().close()


def open_binary(path: str | Path):
    """Open a file for reading bytes, decompressing ``.gz`` files on the fly (within limits)."""
    path = checked_file(path)
    if path.suffix == ".gz":
        return io.BufferedReader(_CappedGzip(path), buffer_size=256 * 1024)
    return path.open("rb")


def open_text(path: str | Path):
    """Open a UTF-8 text file for reading, decompressing ``.gz`` files on the fly."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8")


def read_bytes(path: str | Path) -> bytes:
    """The whole content of a file (decompressed within limits)."""
    with open_binary(path) as handle:
        return handle.read()


def content_size(path: str | Path, stop_after: int) -> int:
    """Bytes of content (decompressed for ``.gz``), counted up to just past ``stop_after``."""
    path = checked_file(path)
    if path.suffix != ".gz":
        return path.stat().st_size
    total = 0
    with open_binary(path) as handle:
        while total <= stop_after and (chunk := handle.read(min(1 << 20, stop_after + 1))):
            total += len(chunk)
    return total


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

    Lines are read as bytes and decoded by orjson (which also checks they are UTF-8); a line
    nested deeper than ``JSON_MAX_DEPTH`` is refused."""
    loads = orjson.loads
    limit = json_max_depth()
    with open_binary(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
            if line.isspace() or not line:
                continue
            try:
                value = loads(line)
            except orjson.JSONDecodeError as exc:
                raise ImportFileError(path, number, _json_error(line, exc, limit)) from exc
            if line.count(b"[") + line.count(b"{") > limit and value_depth(value, limit) > limit:
                raise ImportFileError(path, number, depth_message(limit))
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


def _json_error(line: bytes, exc: orjson.JSONDecodeError, limit: int) -> str:
    if "depth limit" in exc.msg:
        return depth_message(limit)
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8 text: {bad.reason}"
    return f"invalid JSON: {exc.msg}"
