"""Where registered artifacts live: under ``ARTIFACT_ROOT`` (the default: one machine or a
shared filesystem) or, when ``ARTIFACT_STORAGE_URL`` is an fsspec URL (``s3://bucket/prefix``,
``gs://…``), in that object store, for workers on several machines.

An upload is committed by its manifest: the files go under a fresh prefix, then the
``sha256sum``-style manifest (``<artifact>.sha256``, whose own sha256 is the version's) is
written last, so a crash mid-upload never leaves a visible artifact. Downloads stream from the
store chunk by chunk; a worker that needs a registered model (base, reference, reward) copies
it into ``ARTIFACT_ROOT/cache/<sha256>/`` and checks every file's digest first (the machine
that trained it keeps its own copy there). Nothing evicts the cache yet.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings

from common.errors import DomainError
from models_registry.artifacts import CHUNK, Entry

if TYPE_CHECKING:
    from models_registry.models import ModelVersion

MANIFEST_SUFFIX = ".sha256"


def remote_root() -> str | None:
    """``ARTIFACT_STORAGE_URL`` when it names an object store (not a local path), else None."""
    url = getattr(settings, "ARTIFACT_STORAGE_URL", "")
    return url if is_remote(url) else None


def is_remote(uri: str) -> bool:
    return "://" in (uri or "") and not uri.startswith("file://")


def in_store(uri: str) -> bool:
    """Whether ``uri`` lies under the configured store (only those are read from here)."""
    root = remote_root()
    return bool(root) and is_remote(uri) and uri.startswith(root + "/")


def _fs(uri: str):
    import fsspec

    return fsspec.core.url_to_fs(uri, **getattr(settings, "ARTIFACT_STORAGE_OPTIONS", {}))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(path: Path) -> list[tuple[Path, str]]:
    if path.is_file():
        return [(path, path.name)]
    found = (p for p in path.rglob("*") if p.is_file())
    return sorted(((p, p.relative_to(path).as_posix()) for p in found), key=lambda pair: pair[1])


def manifest(path: Path) -> tuple[str, int]:
    """A ``sha256sum``-style manifest of ``path`` (sorted relative paths) and the total size;
    the sha256 of the manifest is the artifact's digest."""
    lines, size = [], 0
    for file, rel in _files(path):
        lines.append(f"{_sha256_file(file)}  {rel}\n")
        size += file.stat().st_size
    return "".join(lines), size


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _parse(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        sha, _, rel = line.partition("  ")
        parts = PurePosixPath(rel).parts
        if len(sha) != 64 or not rel or rel.startswith("/") or ".." in parts:
            raise DomainError(f"artifact manifest has a bad line {line!r}")
        out.append((sha, rel))
    return out


def publish(local: Path, key: str) -> tuple[str, str, int]:
    """Upload ``local`` (an artifact directory) under ``<store>/<key>-<random>/<name>`` and
    commit it by writing its manifest last. Returns (URL, sha256, size)."""
    root = remote_root()
    if root is None:
        raise DomainError("ARTIFACT_STORAGE_URL names no object store")
    text, size = manifest(local)
    uri = f"{root}/{key}-{uuid.uuid4().hex[:12]}/{local.name}"
    fs, base = _fs(uri)
    for file, rel in _files(local):
        fs.put_file(str(file), f"{base}/{rel}")
    with fs.open(base + MANIFEST_SUFFIX, "wb") as handle:
        handle.write(text.encode())
    return uri, digest(text), size


def read_manifest(uri: str, sha256: str = "") -> list[tuple[str, str]]:
    """The committed manifest of ``uri`` as (sha256, relative path) pairs; a missing manifest
    (an upload that never finished) or one whose digest is not ``sha256`` is refused."""
    fs, base = _fs(uri)
    try:
        with fs.open(base + MANIFEST_SUFFIX, "rb") as handle:
            text = handle.read().decode()
    except FileNotFoundError as exc:
        raise DomainError(f"{uri} is not a committed artifact (no manifest)") from exc
    if sha256 and digest(text) != sha256:
        raise DomainError(f"{uri}: its manifest does not match sha256 {sha256}")
    return _parse(text)


def remote_entries(uri: str, sha256: str = "") -> list[Entry]:
    """The files of a stored artifact as tar entries (``artifacts.stream_tar``), opened
    lazily, read in ``CHUNK``-sized blocks and checked against the manifest as they stream."""
    fs, base = _fs(uri)
    name = PurePosixPath(base).name
    out = []
    for expected, rel in read_manifest(uri, sha256):
        info = fs.info(f"{base}/{rel}")
        opener = partial(fs.open, f"{base}/{rel}", "rb", block_size=CHUNK)
        out.append(Entry(f"{name}/{rel}", int(info["size"]), 0, opener, expected))
    return out


def _cache(sha256: str) -> Path:
    return Path(settings.ARTIFACT_ROOT) / "cache" / sha256


def adopt(local: Path, sha256: str) -> None:
    """Move a just-published artifact (``sha256``: its verified digest) into the cache, where
    ``local_copy`` finds it without a download; dropped instead when already cached."""
    cache = _cache(sha256)
    if cache.exists():
        shutil.rmtree(local, ignore_errors=True)
        return
    staging = cache.parent / f".{sha256}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    local.rename(staging / local.name)
    try:
        staging.rename(cache)
    except OSError:  # cached meanwhile
        shutil.rmtree(staging, ignore_errors=True)


def local_copy(uri: str, sha256: str) -> Path:
    """A verified local copy of a stored artifact, cached under ``ARTIFACT_ROOT/cache``: each
    file is downloaded into a private folder, its digest checked against the manifest, and the
    folder renamed into place (concurrent workers: the first rename wins)."""
    if not sha256:
        raise DomainError(f"{uri} has no sha256 to verify a download against")
    name = PurePosixPath(_fs(uri)[1]).name
    cache = _cache(sha256)
    target = cache / name
    if target.exists():
        return target
    fs, base = _fs(uri)
    staging = cache.parent / f".{sha256}.{uuid.uuid4().hex[:8]}"
    try:
        for expected, rel in read_manifest(uri, sha256):
            dest = staging / name / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{base}/{rel}", str(dest))
            if _sha256_file(dest) != expected:
                raise DomainError(f"{uri}: {rel} does not match its manifest")
        try:
            staging.rename(cache)
        except OSError:  # another worker finished first
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve(uri: str, sha256: str) -> str:
    """What a worker loads: a stored artifact's verified local copy; anything else (a local
    path, a hub id, a URI recorded as given) unchanged."""
    return str(local_copy(uri, sha256)) if in_store(uri) else uri


def loadable(version: ModelVersion) -> str:
    """A registered model version as a worker loads it (base, reference, reward, judge)."""
    return resolve(version.artifact_uri, version.sha256)
