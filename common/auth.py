"""Authentication that serves the per-request user lookup from the shared cache.

Django loads the logged-in user from the database on every request. With a cache that every
process shares (Redis, ``CACHE_URL``), ``CachedModelBackend`` keeps each user there for
``USER_CACHE_SECONDS``; saving or deleting a user drops the entry (``signals``), so a password
change, a deactivation or a deletion takes effect on the next request in every process.

API tokens likewise: with ``settings.SHARED_CACHE``, ``CachedTokenAuthentication`` keeps the
user a token names for ``TOKEN_CACHE_SECONDS``, under a digest of the key (never the key): one
cache read per request. Saving or deleting a token, or saving its user, drops the entry
(``signals``), so a deleted or rotated token, or a deactivated user, is refused on the next
request in every process.

``client_address`` is the one reading of a request's client address (``NUM_PROXIES``): DRF's
throttles and django-axes' lockouts (``AXES_CLIENT_IP_CALLABLE``) key on it.
"""

from __future__ import annotations

import copy
import hashlib

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.throttling import BaseThrottle

USER_CACHE_SECONDS = 300
TOKEN_CACHE_SECONDS = 300


def client_address(request: HttpRequest) -> str | None:
    """The client's address as DRF's throttles see it: ``REMOTE_ADDR`` when no proxy is
    configured (``NUM_PROXIES`` 0: a client's own ``X-Forwarded-For`` is ignored), else the
    ``NUM_PROXIES``-th entry from the right of ``X-Forwarded-For``."""
    return BaseThrottle().get_ident(request)


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


def token_cache_key(key: str) -> str:
    return "auth:token:" + hashlib.sha256(key.encode()).hexdigest()


def forget_token(key: str) -> None:
    """Drop a token's cached entry (called on every save and delete of a token)."""
    cache.delete(token_cache_key(key))


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication`` served from the shared cache (see above); without one
    (``settings.SHARED_CACHE`` false) each process would keep its own copy and a deleted token
    would not reach the others, so it reads the database as DRF does."""

    def authenticate_credentials(self, key):
        if not getattr(settings, "SHARED_CACHE", False):
            return super().authenticate_credentials(key)
        entry = token_cache_key(key)
        user = cache.get(entry)
        if user is None:
            user, token = super().authenticate_credentials(key)  # refuses unknown and inactive
            cached = copy.copy(user)
            cached._state.fields_cache.clear()  # the user alone: not its token (the key)
            cache.set(entry, cached, TOKEN_CACHE_SECONDS)
            return user, token
        if not user.is_active:  # an entry is dropped when its user is saved: belt and braces
            raise AuthenticationFailed(_("User inactive or deleted."))
        return user, self.get_model()(key=key, user=user)


class BearerTokenAuthentication(CachedTokenAuthentication):
    """The same API tokens sent as ``Authorization: Bearer <token>`` (what MLflow's clients
    send from ``MLFLOW_TRACKING_TOKEN``)."""

    keyword = "Bearer"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """The schema's name for it (``tokenAuth`` is the ``Token`` scheme's)."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
