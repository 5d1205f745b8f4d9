"""A lock that lasts as long as the process holding it: an exclusive ``flock`` on a file.

The kernel drops the lock when its holder exits, however it exits (SIGKILL, the OOM killer),
while the file stays. So a file that is there but that nobody holds was left by a process that
died: ``take_over`` tells it apart from one a live process holds. The holder writes a note
(host, pid) into the file once it holds it. Works between processes of one host and on shared
filesystems whose ``flock`` locks reach the server (NFSv4).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

# An empty file is being created by a process about to lock it, unless it is older than this.
FRESH_S = 60.0


class ProcessLock:
    """``acquire`` a job's lock, or ``take_over`` the lock a dead process left."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting, creating its file; False while a live process holds
        it."""
        return self._lock(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), note=True)

    def take_over(self) -> bool:
        """Take the lock of a file a dead process left; False when there is no file, a live
        process holds it, or its creator has not locked it yet."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        if not self._lock(fd, note=False):
            return False
        stat = os.fstat(fd)
        if stat.st_size == 0 and time.time() - stat.st_mtime < FRESH_S:
            self.release()
            return False
        return True

    def _lock(self, fd: int, *, note: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if note:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self, *, remove: bool = False) -> None:
        """Let go (and delete the file first with ``remove``: its job is over)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
