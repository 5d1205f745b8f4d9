"""Django's Redis cache with one client per connection pool, that degrades to misses when Redis
is down.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every operation,
which spends more time filling its callback tables than the round trip to Redis takes. A
``redis.Redis`` is thread-safe, so one per pool is kept and reused.

Every cached value is a copy of the database (users, tokens, sessions through ``cached_db``,
throttle histories, the metrics refresh bookkeeping), so an unreachable Redis must cost the
request a database read, never an error: a failed operation is logged and answered as a miss
(``get`` → the default, ``set``/``add``/``delete`` → False), and for ``retry_after`` seconds
the next operations skip Redis at once, so a hung Redis costs one socket timeout per process
(``socket_timeout`` in ``OPTIONS``), not one per request. A ``delete`` that did not reach
Redis (a user saved, a token deleted) would leave a stale copy behind: its key is remembered
and deleted first when Redis answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from django.core.cache.backends import redis as django_redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Beyond this many keys left to delete, the whole cache is cleared on recovery instead.
MAX_UNSENT_DELETES = 10_000


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, servers, *, retry_after: float = 5.0, **options) -> None:
        super().__init__(servers, **options)
        self._clients: dict[int, object] = {}
        self._retry_after = retry_after
        self._down_until = 0.0
        self._unsent_deletes: set[bytes | str] = set()
        self._lock = threading.Lock()

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client

    def _guarded(self, operation: Callable[[], T], miss: T, unsent: tuple = ()) -> T:
        """``operation()``, or ``miss`` while Redis is unreachable (``unsent``: keys of a
        delete, remembered when it fails)."""
        if time.monotonic() < self._down_until or not self._flush_unsent():
            self._remember(unsent)
            return miss
        try:
            return operation()
        except RedisError as exc:
            self._remember(unsent)
            self._down_until = time.monotonic() + self._retry_after
            logger.warning("cache unreachable, served from the database for %ss: %s",
                           self._retry_after, exc)  # fmt: skip
            return miss

    def _remember(self, keys: tuple) -> None:
        if keys:
            with self._lock:
                self._unsent_deletes.update(keys)

    def _flush_unsent(self) -> bool:
        """Send the deletes an outage held back; False when Redis is still unreachable."""
        if not self._unsent_deletes:
            return True
        with self._lock:
            keys, self._unsent_deletes = self._unsent_deletes, set()
        try:
            if len(keys) > MAX_UNSENT_DELETES:
                super().clear()
            else:
                super().delete_many(list(keys))
        except RedisError:
            self._remember(tuple(keys))
            self._down_until = time.monotonic() + self._retry_after
            return False
        return True

    def add(self, key, value, timeout):
        return self._guarded(partial(super().add, key, value, timeout), False)

    def get(self, key, default):
        return self._guarded(partial(super().get, key, default), default)

    def set(self, key, value, timeout):
        self._guarded(partial(super().set, key, value, timeout), None)

    def touch(self, key, timeout):
        return self._guarded(partial(super().touch, key, timeout), False)

    def delete(self, key):
        return self._guarded(partial(super().delete, key), False, (key,))

    def get_many(self, keys):
        return self._guarded(partial(super().get_many, keys), {})

    def has_key(self, key):
        return self._guarded(partial(super().has_key, key), False)

    def incr(self, key, delta):
        value = self._guarded(partial(super().incr, key, delta), None)
        if value is None:
            raise ValueError(f"Key '{key}' not found (the cache is unreachable)")
        return value

    def set_many(self, data, timeout):
        self._guarded(partial(super().set_many, data, timeout), None)

    def delete_many(self, keys):
        keys = tuple(keys)
        self._guarded(partial(super().delete_many, keys), None, keys)


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
