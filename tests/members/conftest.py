"""Membership fixtures: users by role and a project with tasks, with no membership granted
unless a test grants it (``strict_membership``: no automatic upgrade-style joins)."""

import pytest

pytestmark = pytest.mark.strict_membership


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # PBKDF2 at production strength costs 0.5 s per test user; these tests need no such strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def users(make_user):
    """One user per global role, plus a second annotator (``outsider``) who joins nothing."""
    roles = ("admin", "manager", "annotator", "viewer")
    made = {role: make_user(f"m-{role}", role=role) for role in roles}
    made["outsider"] = make_user("m-outsider", role="annotator")
    return made
