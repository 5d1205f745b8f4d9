"""JSONL and Parquet writers that hash what they write, and CSV for streamed exports. Pure
(pyarrow, no Django)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The system allocator hands freed batches back to the OS (Arrow's default pool keeps them), so
# a long export's resident memory stays flat.
POOL = pa.system_memory_pool()
CHUNK_ROWS = 1000  # JSONL rows encoded per buffer
ROW_GROUP_ROWS = 2000  # Parquet rows per row group
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
IDS = pa.list_(pa.int64())
STRINGS = pa.list_(pa.string())
BUCKETS = pa.list_(IDS)


def _text_or_messages(conversational: bool) -> pa.DataType:
    return MESSAGES if conversational else pa.string()


def schema_for(kind: str, style: str = "conversational", prompt_style: str = "explicit"):
    """The fixed Parquet schema of an export kind (the JSONL files have the same columns)."""
    value = _text_or_messages(style == "conversational")
    if kind == "preference":
        head = [] if prompt_style == "implicit" else [("prompt", value)]
        principle = pa.struct(
            [("key", pa.string()), ("favours", pa.string()), ("decisive", pa.bool_())]
        )
        fields = [
            *head,
            ("chosen", value),
            ("rejected", value),
            ("margin", pa.float64()),
            ("judgment_ids", IDS),
            ("annotator_ids", STRINGS),
            ("task_id", pa.int64()),
            ("prompt_id", pa.int64()),
            ("chosen_response_id", pa.int64()),
            ("rejected_response_id", pa.int64()),
            ("spec_version", pa.string()),
            ("principles", pa.list_(principle)),
            ("decisive", STRINGS),
            ("discretion", pa.bool_()),
            ("discretion_note", pa.string()),
            ("agreement", pa.float64()),
            ("strength", pa.int64()),
            ("both_bad", pa.bool_()),
            ("tie", pa.bool_()),
            ("tie_policy", pa.string()),
            ("aggregation", pa.string()),
            ("source_ranking_id", pa.string()),
            ("pair_expansion", pa.string()),
        ]
    elif kind == "ranking":
        verdict = pa.struct(
            [("key", pa.string()), ("verdict", pa.string()), ("response_index", pa.int64())]
        )
        fields = [
            ("prompt", value),
            ("completions", STRINGS),
            ("response_ids", IDS),
            ("ranking", BUCKETS),
            ("ranking_id", pa.string()),
            ("judgment_ids", IDS),
            ("annotator_ids", STRINGS),
            ("task_id", pa.int64()),
            ("prompt_id", pa.int64()),
            ("spec_version", pa.string()),
            ("strength", pa.int64()),
            ("both_bad", pa.bool_()),
            ("principles", pa.list_(verdict)),
            ("decisive", STRINGS),
            ("discretion", pa.bool_()),
            ("agreement", pa.float64()),
            ("aggregation", pa.string()),
        ]
    elif kind == "kto":
        fields = [
            ("prompt", value),
            ("completion", value),
            ("label", pa.bool_()),
            ("judgment_id", pa.int64()),
            ("annotator_id", pa.string()),
            ("task_id", pa.int64()),
            ("prompt_id", pa.int64()),
            ("response_id", pa.int64()),
            ("strength", pa.int64()),
            ("both_bad", pa.bool_()),
            ("discretion", pa.bool_()),
            ("spec_version", pa.string()),
            ("agreement", pa.float64()),
        ]
    elif kind == "raw":
        verdict = pa.struct(
            [("key", pa.string()), ("verdict", pa.string()), ("response_id", pa.int64())]
        )
        response = pa.struct([("id", pa.int64()), ("text", pa.string())])
        fields = [
            ("judgment_id", pa.int64()),
            ("task_id", pa.int64()),
            ("prompt_id", pa.int64()),
            ("task_kind", pa.string()),
            ("annotator_id", pa.string()),
            ("annotator_kind", pa.string()),
            ("prompt", value),
            ("responses", pa.list_(response)),
            ("ordering", BUCKETS),
            ("strength", pa.int64()),
            ("both_bad", pa.bool_()),
            ("verdicts", pa.list_(verdict)),
            ("decisive", STRINGS),
            ("discretion", pa.bool_()),
            ("discretion_note", pa.string()),
            ("rationale", pa.string()),
            ("confidence", pa.int64()),
            ("time_spent_ms", pa.int64()),
            ("created_at", pa.string()),
            ("origin", pa.string()),
            ("spec_version", pa.string()),
            ("agreement", pa.float64()),
        ]
    elif kind == "sft":
        head = [("messages", MESSAGES)] if style == "conversational" else [("text", pa.string())]
        fields = [
            *head,
            ("demonstration_id", pa.int64()),
            ("annotator_id", pa.string()),
            ("prompt_id", pa.int64()),
            ("task_id", pa.int64()),
            ("based_on_response_id", pa.int64()),
            ("cited_principles", STRINGS),
            ("spec_version", pa.string()),
            ("created_at", pa.string()),
        ]
    else:
        raise ValueError(f"unknown export kind {kind!r}")
    return pa.schema(fields)


# Columns holding prompts and completions: shared by every row of a task, so each distinct
# object is serialized once per batch and spliced into the rows as an ``orjson.Fragment``.
HEAVY_COLUMNS = ("prompt", "chosen", "rejected", "completion", "completions", "messages",
                 "responses")  # fmt: skip


def encode_lines(rows: Sequence[dict], *, consume: bool = False) -> bytes:
    """Rows as JSON Lines (UTF-8, compact separators, one object per line). ``consume=True``
    lets the encoder reuse the row dicts (the caller drops them afterwards)."""
    if not rows:
        return b""
    dumps = orjson.dumps
    fragment = orjson.Fragment
    cache: dict[int, orjson.Fragment] = {}
    heavy = [key for key in HEAVY_COLUMNS if key in rows[0]]  # rows of one export share keys
    lines = []
    for row in rows:
        out = row if consume else row.copy()
        for key in heavy:
            value = out[key]
            cached = cache.get(id(value))
            if cached is None:
                cached = cache[id(value)] = fragment(dumps(value))
            out[key] = cached
        lines.append(dumps(out))
    lines.append(b"")  # the trailing newline, without copying the joined batch again
    return b"\n".join(lines)


# A text cell starting with one of these is a formula to a spreadsheet (CSV injection): model
# output is untrusted, so such cells are prefixed with a quote (OWASP's advice).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_columns(schema: pa.Schema) -> list[str]:
    """A CSV export's header: the kind's schema columns, in order (one flat column each)."""
    return list(schema.names)


def csv_cell(value: object) -> str | int | float:
    """One CSV cell: numbers as they are, booleans ``true``/``false``, None empty, nested values
    (messages, lists, principle verdicts) as compact JSON; text starting like a formula is
    prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def encode_csv(rows: Sequence[dict], columns: Sequence[str], *, header: bool = False) -> bytes:
    """Rows as CSV (RFC 4180 quoting, CRLF line ends, UTF-8) with the given columns; a column a
    row lacks is empty. Rows of a task share their prompt and completion objects: each distinct
    object becomes a cell once."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header:
        writer.writerow(columns)
    heavy = frozenset(HEAVY_COLUMNS).intersection(columns)
    cells: dict[int, str | int | float] = {}
    for row in rows:
        out = []
        for name in columns:
            value = row.get(name)
            if name in heavy:
                cell = cells.get(id(value))
                if cell is None:
                    cell = cells[id(value)] = csv_cell(value)
            else:
                cell = csv_cell(value)
            out.append(cell)
        writer.writerow(out)
    return buffer.getvalue().encode()


class _Sink:
    """Runs ``consume(item)`` on a background thread, a few items behind the producer.

    File writes, sha256 and Parquet's C++ encoding release the GIL, so they overlap with the
    Python that shapes the next rows. Errors surface on the next ``put`` or on ``close``."""

    def __init__(self, consume, depth: int = 4) -> None:
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as exc:  # reported to the producer
                    self._error = exc

    def put(self, item) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error


_DONE = object()


class JsonlWriter:
    """One JSON object per line (UTF-8), hashed as written (on a writer thread)."""

    extension = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handle = self.path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.rows = 0
        self._sink = _Sink(self._write)

    def _write(self, data: bytes) -> None:
        self._handle.write(data)
        self._hash.update(data)

    def write_rows(self, rows: Sequence[dict], *, consume: bool = False) -> None:
        """Append rows; ``consume=True``: the caller drops them (faster, no copies)."""
        for start in range(0, len(rows), CHUNK_ROWS):  # small buffers: flat memory
            data = encode_lines(rows[start : start + CHUNK_ROWS], consume=consume)
            self.size += len(data)
            self._sink.put(data)
        self.rows += len(rows)

    def append_file(self, path: str | Path) -> None:
        """Append the bytes of another JSONL file (an export shard), hashing them in order."""
        with Path(path).open("rb") as handle:
            while chunk := handle.read(4 << 20):
                self.size += len(chunk)
                self.rows += chunk.count(b"\n")
                self._sink.put(chunk)

    def close(self) -> str:
        try:
            self._sink.close()
        finally:
            self._handle.close()
        return self._hash.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(BaseException):  # the file is discarded anyway
            self._sink.close()
        self._handle.close()
        self.path.unlink(missing_ok=True)


def column_array(values: list, data_type: pa.DataType) -> pa.Array:
    """An Arrow array of ``values``. Rows of one task share their prompt / completion objects,
    so repeated objects are converted once and expanded with ``take`` (C++), not per row."""
    if not (pa.types.is_list(data_type) or pa.types.is_string(data_type)) or len(values) < 64:
        return pa.array(values, type=data_type, memory_pool=POOL)
    seen: dict[int, int] = {}
    unique: list = []
    indices: list[int] = []
    for value in values:
        key = id(value)
        index = seen.get(key)
        if index is None:
            index = seen[key] = len(unique)
            unique.append(value)
        indices.append(index)
    if len(unique) * 2 > len(values):
        return pa.array(values, type=data_type, memory_pool=POOL)
    base = pa.array(unique, type=data_type, memory_pool=POOL)
    return pc.take(base, pa.array(indices, type=pa.int32()), memory_pool=POOL)


class ParquetWriter:
    """Row groups of a fixed schema; the file is hashed once it is closed."""

    extension = "parquet"

    def __init__(self, path: str | Path, schema: pa.Schema, compression: str = "zstd") -> None:
        self.path = Path(path)
        self.schema = schema
        self._writer = pq.ParquetWriter(
            self.path, schema, compression=compression, memory_pool=POOL
        )
        self._sink = _Sink(self._writer.write_table, depth=2)
        self.rows = 0
        self.size = 0

    def write_rows(self, rows: list[dict], *, consume: bool = False) -> None:
        """Each chunk of up to ``ROW_GROUP_ROWS`` rows becomes one row group."""
        for start in range(0, len(rows), ROW_GROUP_ROWS):
            chunk = rows[start : start + ROW_GROUP_ROWS]
            columns = [
                column_array([row.get(name) for row in chunk], field.type)
                for name, field in zip(self.schema.names, self.schema, strict=True)
            ]
            self._sink.put(pa.Table.from_arrays(columns, schema=self.schema))
            del columns
        self.rows += len(rows)

    def append_arrow(self, path: str | Path) -> None:
        """Append the record batches of an Arrow IPC shard, one row group each."""
        with pa.OSFile(str(path), "rb") as source:  # read, not mapped: flat resident memory
            reader = pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(use_threads=False))
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                self._sink.put(pa.Table.from_batches([batch], schema=self.schema))
                self.rows += batch.num_rows
            self._sink.close()  # the file must stay open until its batches are written
        self._sink = _Sink(self._writer.write_table, depth=2)

    def close(self) -> str:
        try:
            self._sink.close()
        finally:
            self._writer.close()
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        self.size = self.path.stat().st_size
        return digest.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(BaseException):  # the file is discarded anyway
            self._sink.close()
        try:
            self._writer.close()
        finally:
            self.path.unlink(missing_ok=True)


class ArrowShardWriter:
    """An export shard as an Arrow IPC file (already-converted columns), to be appended to a
    Parquet snapshot by ``ParquetWriter.append_arrow``."""

    def __init__(self, path: str | Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self.rows = 0

    def write_rows(self, rows: list[dict], *, consume: bool = False) -> None:
        for start in range(0, len(rows), ROW_GROUP_ROWS):
            chunk = rows[start : start + ROW_GROUP_ROWS]
            columns = [
                column_array([row.get(name) for row in chunk], field.type)
                for name, field in zip(self.schema.names, self.schema, strict=True)
            ]
            self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        self.rows += len(rows)

    def close(self) -> str:
        self._writer.close()
        self._sink.close()
        return ""

    def abort(self) -> None:
        with contextlib.suppress(BaseException):
            self.close()
        self.path.unlink(missing_ok=True)


def open_writer(fmt: str, path: str | Path, schema: pa.Schema):
    if fmt == "jsonl":
        return JsonlWriter(path)
    if fmt == "parquet":
        return ParquetWriter(path, schema)
    raise ValueError(f"unknown export format {fmt!r}")


def warm_up() -> None:
    """Load the Arrow / Parquet / orjson code paths once (their pages count as resident memory;
    the export benchmark measures growth after this, i.e. what the data costs)."""
    import os
    import tempfile

    row = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant",
           "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}  # fmt: skip
    rows = [dict(row, prompt=row["prompt"]) for _ in range(128)]
    encode_lines(rows)
    handle, name = tempfile.mkstemp(suffix=".parquet")
    os.close(handle)
    try:
        for kind in ("preference", "raw"):
            writer = ParquetWriter(name, schema_for(kind))
            writer.write_rows(rows)
            writer.close()
    finally:
        os.unlink(name)
