"""Brute force on every password entry point (django-axes), proxies trusted only when
configured (``NUM_PROXIES``), the API schema and docs behind login in production."""

import os
import subprocess
import sys

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
TOKEN_URL = "/api/v1/auth/token/"
RIGHT = "pw-for-tests-1"
SPOOFED = "203.0.113.9"


def _guess_then_log_in(post) -> object:
    """40 wrong passwords, then the right one: the reply to the right one."""
    for i in range(40):
        assert post(f"wrong-{i}").status_code in {200, 400, 429}
    return post(RIGHT)


def test_the_web_login_locks_out_after_repeated_failures(client, make_user):
    make_user("victim")
    reply = _guess_then_log_in(
        lambda pw: client.post("/login/", {"username": "victim", "password": pw})
    )
    assert reply.status_code == 429
    assert "Too many failed log-ins" in reply.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_admin_login_locks_out_after_repeated_failures(client, admin_user):
    reply = _guess_then_log_in(
        lambda pw: client.post(
            "/admin/login/?next=/admin/", {"username": admin_user.username, "password": pw}
        )
    )
    assert reply.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_token_endpoint_locks_out_after_repeated_failures(make_user):
    make_user("victim")
    api = APIClient()
    reply = _guess_then_log_in(
        lambda pw: api.post(TOKEN_URL, {"username": "victim", "password": pw}, format="json")
    )
    assert reply.status_code == 429
    assert "too many login attempts" in reply.json()["detail"]
    assert int(reply["Retry-After"]) > 0
    assert not Token.objects.filter(user__username="victim").exists()


@pytest.fixture
def token_carrier(make_user) -> APIClient:
    """An API client that carries a valid token (of an account its holder owns)."""
    api = APIClient()
    attacker = make_user("attacker")
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=attacker).key}")
    return api


def test_a_token_carrying_request_is_locked_out_too(token_carrier, make_user):
    make_user("victim")
    reply = _guess_then_log_in(
        lambda pw: token_carrier.post(
            TOKEN_URL, {"username": "victim", "password": pw}, format="json"
        )
    )
    assert reply.status_code == 429


def test_a_token_carrying_request_is_throttled_as_anonymous(settings, token_carrier):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "5/min"},
    }
    codes = [
        token_carrier.post(
            TOKEN_URL, {"username": f"u{i}", "password": "x"}, format="json"
        ).status_code
        for i in range(6)
    ]
    assert codes == [400] * 5 + [429]


def test_an_overlong_username_is_refused_before_it_is_counted(db):
    reply = APIClient().post(TOKEN_URL, {"username": "x" * 300, "password": "y"}, format="json")
    assert reply.status_code == 400 and "username" in reply.json()
    assert not AccessAttempt.objects.exists()


def test_a_right_password_resets_the_count(client, make_user):
    make_user("forgetful")
    for _ in range(2):
        for i in range(django_settings.AXES_FAILURE_LIMIT - 1):
            client.post("/login/", {"username": "forgetful", "password": f"wrong-{i}"})
        assert client.post("/login/", {"username": "forgetful", "password": RIGHT}).status_code
        assert "_auth_user_id" in client.session
        client.post("/logout/")


@pytest.mark.parametrize(("num_proxies", "expected"), [(0, "127.0.0.1"), (1, SPOOFED)])
def test_x_forwarded_for_counts_only_behind_a_configured_proxy(
    settings, client, make_user, num_proxies, expected
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": num_proxies}
    make_user("victim")
    client.post(
        "/login/",
        {"username": "victim", "password": "wrong"},
        HTTP_X_FORWARDED_FOR=f"198.51.100.7, {SPOOFED}",
    )
    assert AccessAttempt.objects.get(username="victim").ip_address == expected
    # The token endpoint's throttle keys on the same address: with no proxy configured, a new
    # X-Forwarded-For on every request does not escape it.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "3/min"},
    }
    codes = [
        APIClient()
        .post(
            TOKEN_URL,
            {"username": f"u{i}", "password": "x"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        )
        .status_code
        for i in range(4)
    ]
    assert codes == ([400] * 3 + [429] if num_proxies == 0 else [400] * 4)


def test_the_proxy_count_defaults_to_zero():
    assert django_settings.NUM_PROXIES == 0
    assert django_settings.REST_FRAMEWORK["NUM_PROXIES"] == 0


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_a_login_when_not_public(settings, client, make_user, url):
    settings.API_DOCS_PUBLIC = False
    assert client.get(url).status_code in {401, 403}
    client.force_login(make_user("reader", role="viewer"))
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_are_public_in_development(client, url):
    assert not django_settings.PRODUCTION
    assert client.get(url).status_code == 200


def test_production_settings_keep_the_docs_private_and_trust_no_proxy():
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "SECRET_KEY": "k3y-" + "q7Zp" * 15,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("API_DOCS_PUBLIC", None)
    env.pop("NUM_PROXIES", None)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings as s; "
            "print(s.API_DOCS_PUBLIC, s.REST_FRAMEWORK['NUM_PROXIES'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=django_settings.BASE_DIR,
    )
    assert out.stdout.split() == ["False", "0"]
