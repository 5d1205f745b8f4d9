"""Stable pseudonymous annotator ids: an HMAC of the user id, never the username."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    """``Pseudonymizer(key)(user_id)`` → ``"a-3f9c…"`` (16 hex digits), cached per id."""

    def __init__(self, key: str | bytes, prefix: str = "a-") -> None:
        self._key = key.encode() if isinstance(key, str) else key
        self._prefix = prefix
        self._cache: dict[int, str] = {}

    def __call__(self, user_id: int) -> str:
        value = self._cache.get(user_id)
        if value is None:
            digest = hmac.new(self._key, f"user:{user_id}".encode(), hashlib.sha256).hexdigest()
            value = self._cache[user_id] = self._prefix + digest[:16]
        return value
