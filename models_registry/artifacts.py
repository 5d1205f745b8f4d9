"""Streaming a model artifact (a directory or a file, local or behind fsspec) as an
uncompressed tar, chunk by chunk: the response never holds a whole weight file in memory
(weights barely compress anyway)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from models_registry import adapters

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class Entry:
    """One file of an archive: its name in the tar, size, mtime, how to open it and, when
    known, the sha256 its content must have."""

    name: str
    size: int
    mtime: int
    open: Callable[[], BinaryIO]
    sha256: str = ""


class ContentMismatch(RuntimeError):
    """A file's bytes differ from its recorded sha256 (the archive is cut short)."""


def local_entries(root: Path) -> list[Entry]:
    """The regular files of ``root`` (a file, or a directory walked in sorted order) named
    ``<root name>/<relative path>``."""
    files = (
        [(root, root.name)]
        if root.is_file()
        else [
            (path, f"{root.name}/{path.relative_to(root).as_posix()}")
            for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
            if path.is_file() and not path.is_symlink()
        ]
    )
    out = []
    for path, name in files:
        stat = path.stat()
        out.append(Entry(name, stat.st_size, int(stat.st_mtime), partial(path.open, "rb")))
    return out


def stream_tar(root: Path | Iterable[Entry]) -> Iterator[bytes]:
    """The bytes of a POSIX (PAX) tar of ``root`` (a local path, or entries such as
    ``models_registry.storage.remote_entries``): one header per file, its content in 1 MiB
    chunks, padding to 512-byte blocks, and the two zero blocks that end an archive. An entry
    with a ``sha256`` is hashed as it streams: on a mismatch the archive stops before its end
    (``ContentMismatch``), so a client never receives a complete archive with altered bytes."""
    entries = local_entries(root) if isinstance(root, Path) else root
    for entry in entries:
        info = tarfile.TarInfo(entry.name)
        info.size = entry.size
        info.mtime = entry.mtime
        info.mode = 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        written, digest = 0, hashlib.sha256() if entry.sha256 else None
        with entry.open() as handle:
            while written < info.size:
                chunk = handle.read(min(CHUNK, info.size - written))
                if not chunk:
                    break
                written += len(chunk)
                if digest is not None:
                    digest.update(chunk)
                yield chunk
        if digest is not None and (written != info.size or digest.hexdigest() != entry.sha256):
            raise ContentMismatch(f"{entry.name} does not match its sha256")
        if written < info.size:  # the file shrank while streaming: keep the archive well-formed
            yield b"\0" * (info.size - written)
        remainder = info.size % BLOCK
        if remainder:
            yield b"\0" * (BLOCK - remainder)
    yield b"\0" * (2 * BLOCK)


def merged_tar(root: Path) -> Iterator[bytes]:
    """The tar of the adapter at ``root`` merged into its base (full weights, loadable with
    transformers' ``AutoModel*``), as a directory named ``<root>-merged``. The merge is written
    to a temporary directory before the first byte is returned (so a failure raises here, not
    mid-stream) and removed when the stream ends or is closed."""
    workspace = Path(tempfile.mkdtemp(prefix="merged-"))
    try:
        merged = adapters.write_merged(root, workspace / f"{root.name}-merged")
    except BaseException:
        shutil.rmtree(workspace, ignore_errors=True)
        raise
    return _removing(stream_tar(merged), workspace)


def _removing(chunks: Iterator[bytes], directory: Path) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        shutil.rmtree(directory, ignore_errors=True)
