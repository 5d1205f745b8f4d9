"""Streaming a model artifact (a directory or a file) as an uncompressed tar, chunk by chunk:
the response never holds a whole weight file in memory (weights barely compress anyway)."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from models_registry import adapters

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


def _files(root: Path) -> list[tuple[Path, str]]:
    if root.is_file():
        return [(root, root.name)]
    return [
        (path, f"{root.name}/{path.relative_to(root).as_posix()}")
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
        if path.is_file() and not path.is_symlink()
    ]


def stream_tar(root: Path) -> Iterator[bytes]:
    """The bytes of a POSIX (PAX) tar of ``root``: one header per regular file, its content in
    1 MiB chunks, padding to 512-byte blocks, and the two zero blocks that end an archive."""
    for path, name in _files(root):
        stat = path.stat()
        info = tarfile.TarInfo(name)
        info.size = stat.st_size
        info.mtime = int(stat.st_mtime)
        info.mode = 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        written = 0
        with path.open("rb") as handle:
            while written < info.size:
                chunk = handle.read(min(CHUNK, info.size - written))
                if not chunk:
                    break
                written += len(chunk)
                yield chunk
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
