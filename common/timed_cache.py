"""A per-process memo whose entries expire after a few seconds (for values read on every
request that may lag that much behind the database)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from time import monotonic
from typing import Generic, TypeVar

V = TypeVar("V")


class TimedCache(Generic[V]):
    """``get(key, compute)`` returns a value computed at most ``seconds`` ago; the whole memo is
    dropped when it holds more than ``limit`` entries."""

    def __init__(self, seconds: float, limit: int) -> None:
        self.seconds = seconds
        self.limit = limit
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        now = monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = compute()
        if len(self._entries) > self.limit:
            self._entries.clear()
        self._entries[key] = (now + self.seconds, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
