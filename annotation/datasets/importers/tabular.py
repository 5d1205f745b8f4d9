"""Records from JSONL, JSON, CSV and Parquet files, each with the line (row) it starts on.

``iter_records(path)`` yields ``(line, record)``: for JSONL the line number, for a JSON array
the line where the element starts, for CSV the physical line where the record starts (header
is line 1), for Parquet the 1-based row number. Every decoding problem is an
``ImportFileError`` naming the line. Prompt/response records then go through
``prompts.parse_record`` and preference records through ``preferences``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from annotation.errors import ImportFileError
from annotation.files import (
    checked_file,
    content_size,
    decompressed_limit,
    json_lines,
    open_text,
    read_bytes,
)
from common.limits import too_deep

FORMATS = ("jsonl", "json", "csv", "parquet")
# CSV cells that hold JSON (lists / objects) rather than plain text.
JSON_COLUMNS = {"messages", "responses", "metadata", "conversation_a", "conversation_b"}
_WHITESPACE = " \t\r\n"


def detect_format(path: str | Path) -> str:
    """From the suffix, ignoring ``.gz``: jsonl / json / csv / parquet."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    return {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".csv": "csv",
        ".parquet": "parquet",
        ".pq": "parquet",
    }.get(suffix, "jsonl")


def _read_text(path: Path) -> str:
    """The whole file as text, refused when nested deeper than ``JSON_MAX_DEPTH``."""
    raw = read_bytes(path)
    if (reason := too_deep(raw)) is not None:
        raise ImportFileError(path, None, reason)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportFileError(path, line, f"not UTF-8 text: {exc.reason}") from exc


def json_array_records(path: str | Path) -> Iterator[tuple[int, object]]:
    """Elements of a top-level JSON array (or of ``{"records"|"data"|"tasks": [...]}``)."""
    path = Path(path)
    text = _read_text(path)
    decoder = json.JSONDecoder()

    def line_at(index: int) -> int:
        return text.count("\n", 0, index) + 1

    index = len(text) - len(text.lstrip(_WHITESPACE))
    if index == len(text):
        raise ImportFileError(path, None, "empty file")
    if text[index] == "{":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFileError(path, exc.lineno, f"invalid JSON: {exc.msg}") from exc
        key = next((k for k in ("records", "data", "tasks") if k in document), None)
        if key is None or not isinstance(document[key], list):
            raise ImportFileError(path, 1, "expected a JSON array of records")
        # Lines are approximate for this shape: re-find each element by decoding in place.
        start = text.index("[", text.index(f'"{key}"'))
        yield from _array_elements(path, text, start, decoder, line_at)
        return
    if text[index] != "[":
        raise ImportFileError(path, line_at(index), "expected a JSON array of records")
    yield from _array_elements(path, text, index, decoder, line_at)


def _array_elements(path, text, start, decoder, line_at):
    index = start + 1
    length = len(text)
    expect_value = True
    first = True
    while True:
        while index < length and text[index] in _WHITESPACE:
            index += 1
        if index >= length:
            raise ImportFileError(path, line_at(length), "invalid JSON: unterminated array")
        char = text[index]
        if char == "]" and (first or not expect_value):
            return
        if not expect_value:
            if char != ",":
                raise ImportFileError(path, line_at(index), "invalid JSON: expected ',' or ']'")
            index += 1
            expect_value = True
            continue
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise ImportFileError(path, exc.lineno, f"invalid JSON: {exc.msg}") from exc
        except RecursionError as exc:  # depth is checked first; a fallback
            raise ImportFileError(path, line_at(index), "JSON nested too deeply") from exc
        yield line_at(index), value
        index = end
        expect_value = False
        first = False


def csv_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Rows of a CSV file with a header; JSON-looking cells of known columns are decoded."""
    path = Path(path)
    with open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if not header:
                raise ImportFileError(path, 1, "CSV needs a header row")
            header = [name.strip().lstrip("\ufeff") for name in header]
            if len(set(header)) != len(header):
                raise ImportFileError(path, 1, "duplicate column names in the CSV header")
            start = reader.line_num + 1
            for cells in reader:
                line = start
                start = reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    raise ImportFileError(
                        path, line, f"{len(cells)} cells for {len(header)} columns"
                    )
                record: dict = {}
                for name, cell in zip(header, cells, strict=True):
                    record[name] = _decode_cell(path, line, name, cell)
                yield line, record
        except csv.Error as exc:
            raise ImportFileError(path, reader.line_num, f"invalid CSV: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ImportFileError(path, reader.line_num + 1, f"not UTF-8 text: {exc}") from exc


def _decode_cell(path: Path, line: int, name: str, cell: str):
    stripped = cell.strip()
    looks_json = stripped[:1] in {"[", "{"}
    if name in JSON_COLUMNS or (looks_json and name in {"prompt", "chosen", "rejected"}):
        if not stripped:
            return None
        if looks_json:
            try:
                return json.loads(stripped)
            except json.JSONDecodeError as exc:
                reason = f"column {name!r}: invalid JSON: {exc.msg}"
                raise ImportFileError(path, line, reason) from exc
            except RecursionError as exc:
                reason = f"column {name!r}: JSON nested too deeply"
                raise ImportFileError(path, line, reason) from exc
    return cell


def parquet_records(path: str | Path, batch_size: int = 2048) -> Iterator[tuple[int, dict]]:
    """Rows of a Parquet file as dicts; the "line" is the 1-based row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = checked_file(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportFileError(path, None, f"not a Parquet file: {exc}") from exc
    limit, why = decompressed_limit(path)
    if parquet_size(parquet) > limit:
        raise ImportFileError(path, None, f"decompresses to {why}")
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size):
            for record in batch.to_pylist():
                row += 1
                yield row, record
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportFileError(path, row + 1, f"unreadable Parquet data: {exc}") from exc


def parquet_size(parquet) -> int:
    """The uncompressed size of a Parquet file's data, as its metadata states it."""
    metadata = parquet.metadata
    return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))


def decompressed_size(path: str | Path, fmt: str, stop_after: int) -> int:
    """What ``path`` holds once decompressed (Parquet: its metadata's uncompressed size),
    counted up to just past ``stop_after``."""
    if fmt != "parquet":
        return content_size(path, stop_after)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = checked_file(path)
    try:
        return parquet_size(pq.ParquetFile(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportFileError(path, None, f"not a Parquet file: {exc}") from exc


def _csv_prompt_record(line: int, record: dict) -> tuple[int, dict]:
    """Flat CSV columns (``response_1``…, ``response_a``/``_b``, ``source_1``…) → a record."""
    if "responses" not in record:
        numbered = []
        for suffixes in (("a", "b"), tuple(str(i) for i in range(1, 9))):
            texts = [record.get(f"response_{s}") for s in suffixes]
            if any(texts):
                numbered = [
                    {
                        "text": text,
                        "source": record.get(f"source_{s}") or "",
                        "label": record.get(f"label_{s}") or "",
                    }
                    for s, text in zip(suffixes, texts, strict=True)
                    if text
                ]
                break
        if numbered or any(k.startswith("response_") for k in record):
            record = {**record, "responses": numbered}
    if record.get("metadata") in ("", None):
        record.pop("metadata", None)
    if record.get("kind") == "":
        record.pop("kind")
    if record.get("id") == "":
        record.pop("id")
    return line, record


def iter_records(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, object]]:
    """``(line, record)`` for every record of a JSONL / JSON / CSV / Parquet file."""
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":
        return json_lines(path)
    if fmt == "json":
        return json_array_records(path)
    if fmt == "csv":
        return (_csv_prompt_record(line, record) for line, record in csv_records(path))
    if fmt == "parquet":
        return parquet_records(path)
    raise ImportFileError(path, None, f"unknown format {fmt!r}; choose one of {FORMATS}")
