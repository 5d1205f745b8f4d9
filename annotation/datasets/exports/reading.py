"""Reading a snapshot file back (JSONL or Parquet): its first rows, the rows as JSON lines, and
the figures of its dataset card (mean agreement, the consensus / conflict / indifference split of
its pairs' principle verdicts). Pure: no Django."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from annotation.datasets.exports.records import FAVOURS_CHOSEN, FAVOURS_REJECTED

CATEGORY_NAMES = ("consensus", "conflict", "indifference")
READ_BATCH_ROWS = 2048


def iter_rows(
    path: Path, fmt: str, columns: list[str] | None = None, batch_rows: int = READ_BATCH_ROWS
) -> Iterator[dict]:
    """The file's rows in order, one dict each (Parquet: only ``columns`` when given)."""
    if fmt == "parquet":
        parquet = pq.ParquetFile(path)
        if columns is not None:
            columns = [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()
        return
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)


def first_rows(path: Path, fmt: str, limit: int) -> list[dict]:
    return list(itertools.islice(iter_rows(path, fmt, batch_rows=max(limit, 1)), limit))


def jsonl_chunks(path: Path, fmt: str, rows_per_chunk: int = 512) -> Iterator[bytes]:
    """The file as JSON Lines, a chunk of rows at a time (a Parquet file converted)."""
    rows = iter_rows(path, fmt)
    while chunk := list(itertools.islice(rows, rows_per_chunk)):
        yield b"".join(orjson.dumps(row) + b"\n" for row in chunk)


def category(principles: list[dict] | None) -> str:
    """A pair's category by its principle verdicts: consensus (they take one side), conflict
    (both sides), indifference (no side)."""
    sides = {p.get("favours") for p in principles or ()} & {FAVOURS_CHOSEN, FAVOURS_REJECTED}
    if len(sides) == 2:
        return "conflict"
    return "consensus" if sides else "indifference"


def card_figures(rows: Iterator[dict], limit: int) -> dict:
    """Mean agreement and the category split over at most ``limit`` rows (``complete`` says
    whether the file held no more)."""
    categories = dict.fromkeys(CATEGORY_NAMES, 0)
    agreement_sum, agreement_n, seen = 0.0, 0, 0
    complete = True
    for row in rows:
        if seen >= limit:
            complete = False
            break
        seen += 1
        agreement = row.get("agreement")
        if isinstance(agreement, int | float):
            agreement_sum += agreement
            agreement_n += 1
        if "principles" in row:
            categories[category(row["principles"])] += 1
    return {
        "rows_read": seen,
        "complete": complete,
        "mean_agreement": agreement_sum / agreement_n if agreement_n else None,
        "categories": categories if any(categories.values()) else None,
    }
