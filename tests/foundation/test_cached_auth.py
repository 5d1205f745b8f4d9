"""Sessions, users and API tokens served from the shared cache (``CACHE_URL``): no database
round trip per request, and a logout, deactivation, password change or deleted token still
takes effect at once."""

import os
import pickle

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from common.auth import token_cache_key
from config.cache import RedisCache

pytestmark = pytest.mark.django_db
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


@pytest.fixture
def shared_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": REDIS,
            "KEY_PREFIX": f"test-{os.getpid()}",
        }
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    settings.AUTHENTICATION_BACKENDS = ["common.auth.CachedModelBackend"]
    settings.SHARED_CACHE = True
    cache.clear()
    yield
    cache.clear()


def test_a_logged_in_request_reads_neither_session_nor_user_from_the_database(
    shared_cache, client, make_user
):
    make_user("carol")
    assert client.login(username="carol", password="pw-for-tests-1")
    assert client.get(reverse("home")).status_code == 200  # fills the cache
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("home")).status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "django_session" not in sql
    assert '"auth_user"' not in sql


@pytest.mark.parametrize("change", ["deactivate", "password", "delete"])
def test_changes_to_a_user_end_their_cached_session_at_once(
    shared_cache, client, make_user, change
):
    user = make_user("dave")
    client.force_login(user)
    assert client.get(reverse("home")).status_code == 200
    user = get_user_model().objects.get(pk=user.pk)  # a fresh copy, as another process holds
    if change == "deactivate":
        user.is_active = False
        user.save()
    elif change == "password":
        user.set_password("a-new-password-42")
        user.save()
    else:
        user.delete()
    reply = client.get(reverse("home"))
    assert reply.status_code == 302 and reply["Location"].startswith(reverse("login"))


def test_logout_ends_the_cached_session(shared_cache, client, make_user):
    make_user("erin")
    assert client.login(username="erin", password="pw-for-tests-1")
    session_key = client.cookies["sessionid"].value
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    client.cookies["sessionid"] = session_key  # a copied cookie replayed after logout
    reply = client.get(reverse("home"))
    assert reply.status_code == 302 and reply["Location"].startswith(reverse("login"))


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_an_api_token_request_reads_neither_token_nor_user_from_the_database(
    shared_cache, make_user
):
    token = Token.objects.create(user=make_user("frank"))
    client = token_client(token.key)
    assert client.get("/api/v1/me/").json()["username"] == "frank"  # fills the cache
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me/").json()["username"] == "frank"
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "authtoken_token" not in sql
    assert '"auth_user"' not in sql
    assert token.key.encode() not in pickle.dumps(cache.get(token_cache_key(token.key)))


@pytest.mark.parametrize("change", ["delete", "queryset delete", "rotate", "deactivate"])
def test_a_deleted_rotated_or_deactivated_token_is_refused_on_the_next_request(
    shared_cache, make_user, change
):
    user = make_user("grace")
    old = Token.objects.create(user=user)
    client = token_client(old.key)
    assert client.get("/api/v1/me/").status_code == 200
    assert cache.get(token_cache_key(old.key)) == user  # what every process reads
    if change == "delete":
        Token.objects.get(pk=old.pk).delete()  # a fresh copy, as another process holds
    elif change == "queryset delete":
        Token.objects.filter(user=user).delete()
    elif change == "rotate":
        Token.objects.get(pk=old.pk).delete()
        new = Token.objects.create(user=user)
        assert token_client(new.key).get("/api/v1/me/").status_code == 200
    else:
        fresh = get_user_model().objects.get(pk=user.pk)
        fresh.is_active = False
        fresh.save()
    assert cache.get(token_cache_key(old.key)) is None
    reply = client.get("/api/v1/me/")
    assert reply.status_code == 401, reply.json()


def test_one_redis_client_per_connection_pool():
    backend = RedisCache(REDIS, {})
    client = backend._cache.get_client("k")
    assert backend._cache.get_client("other", write=True) is client
    backend.set("governing-llms-test-key", {"x": 1}, 5)
    assert backend.get("governing-llms-test-key") == {"x": 1}
    backend.delete("governing-llms-test-key")
