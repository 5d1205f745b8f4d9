"""The demo seed, the login flow and the role-aware home pages."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation.models import DatasetSnapshot, Judgment, PrincipleSet, Project, Task


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_prints_logins(capsys):
    call_command("seed_demo", "--limit", "50", "--persona-pairs", "12")
    call_command("seed_demo", "--limit", "50", "--persona-pairs", "12")
    out = capsys.readouterr().out
    assert "alice / alice-demo-pass" in out and "dash / dash-demo-pass" in out
    assert Project.objects.count() == 3
    assert Task.objects.filter(project__slug="hh-harmless").count() == 50
    assert PrincipleSet.objects.get(name="demo-harmlessness").is_published
    labels = Project.objects.get(slug="hh-harmless-labels")
    assert Judgment.objects.filter(task__project=labels).count() == 50
    (snapshot,) = DatasetSnapshot.objects.filter(project=labels)
    assert (snapshot.status, snapshot.kind, snapshot.row_count) == ("ready", "preference", 50)
    assert len(snapshot.sha256) == 64


@pytest.mark.django_db
def test_login_then_role_aware_home(client):
    call_command("seed_demo", "--limit", "5", "--persona-pairs", "6")
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
    call_command("seed_demo", "--limit", "1", "--persona-pairs", "6")
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200 and b"Wrong username or password" in response.content
