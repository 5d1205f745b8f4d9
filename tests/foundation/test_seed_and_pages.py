"""The demo seed, the login flow and the role-aware home pages."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation.models import PrincipleSet, Project, Task


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_prints_logins(capsys):
    call_command("seed_demo", "--limit", "50")
    call_command("seed_demo", "--limit", "50")
    out = capsys.readouterr().out
    assert "alice / alice-demo-pass" in out
    assert Project.objects.count() == 1
    assert Task.objects.count() == 50
    assert PrincipleSet.objects.get(name="demo-harmlessness").is_published


@pytest.mark.django_db
def test_login_then_role_aware_home(client):
    call_command("seed_demo", "--limit", "5")
    assert client.get(reverse("home")).status_code == 302  # anonymous → login
    login = client.post(reverse("login"), {"username": "alice", "password": "alice-demo-pass"})
    assert login.status_code == 302
    page = client.get(reverse("home"))
    assert page.status_code == 200
    assert b"Your annotation queue" in page.content
    assert reverse("admin:index").encode() not in page.content

    client.logout()
    client.post(reverse("login"), {"username": "admin", "password": "admin-demo-pass"})
    page = client.get(reverse("home"))
    assert b"Projects" in page.content and reverse("admin:index").encode() in page.content


@pytest.mark.django_db
def test_wrong_password_is_refused(client):
    call_command("seed_demo", "--limit", "1")
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200 and b"Wrong username or password" in response.content
