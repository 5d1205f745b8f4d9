"""Authentication that serves the per-request user lookup from the shared cache.

Django loads the logged-in user from the database on every request. With a cache that every
process shares (Redis, ``CACHE_URL``), ``CachedModelBackend`` keeps each user there for
``USER_CACHE_SECONDS``; saving or deleting a user drops the entry (``signals``), so a password
change, a deactivation or a deletion takes effect on the next request in every process.
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache

USER_CACHE_SECONDS = 300


def user_cache_key(user_id: object) -> str:
    return f"auth:user:{user_id}"


def forget_user(user_id: object) -> None:
    """Drop a user's cached copy (called on every save and delete of a user)."""
    cache.delete(user_cache_key(user_id))


class CachedModelBackend(ModelBackend):
    """``ModelBackend`` whose ``get_user`` reads through the shared cache."""

    def get_user(self, user_id):
        key = user_cache_key(user_id)
        user = cache.get(key)
        if user is None:
            user = super().get_user(user_id)  # None when missing or inactive
            if user is not None:
                cache.set(key, user, USER_CACHE_SECONDS)
            return user
        return user if self.user_can_authenticate(user) else None
