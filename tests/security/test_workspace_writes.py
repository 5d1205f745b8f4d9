"""What the workspace writes, and when: a deactivated project takes no more submissions (409,
on the ORM path and PostgreSQL's one-statement submit alike), and only a POST leases a task (a
cross-site link, a GET, leases nothing)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Assignment, Demonstration, Judgment, Project, Task
from annotation.workspace import leasing

pytestmark = pytest.mark.django_db
V1 = "/api/v1/"
HX = {"HTTP_HX_REQUEST": "true"}


def deactivate(project: Project) -> None:
    project.is_active = False
    project.save()


def test_a_deactivated_project_refuses_api_submissions_on_live_leases(
    make_user, project, compare_tasks
):
    annotator = make_user("late")
    client = APIClient()
    client.force_authenticate(annotator)
    lease = client.post(V1 + f"projects/{project.pk}/next-task/").json()
    deactivate(project)
    body = {"ordering": [["A"], ["B"]], "strength": 1, "idempotency_key": "late-1"}
    reply = client.post(V1 + f"assignments/{lease['id']}/submit/", body, format="json")
    assert reply.status_code == 409, reply.content
    assert "deactivated" in reply.json()["detail"]
    assert not Judgment.objects.exists()
    assignment = Assignment.objects.get(pk=lease["id"])
    assert assignment.state == Assignment.State.LEASED and assignment.submitted_at is None
    assert Task.objects.get(pk=lease["task"]).submitted_count == 0
    # active again: the same lease is accepted
    project.is_active = True
    project.save()
    reply = client.post(V1 + f"assignments/{lease['id']}/submit/", body, format="json")
    assert reply.status_code == 201


def test_a_deactivated_project_refuses_page_submissions_with_a_message(
    client, make_user, project, compare_tasks
):
    annotator = make_user("late-page")
    client.force_login(annotator)
    html = client.post(reverse("workspace", args=[project.slug]), **HX).content.decode()
    pk = int(re.search(r'data-assignment="(\d+)"', html).group(1))
    deactivate(project)
    url = reverse("workspace-submit", args=[pk])
    reply = client.post(url, {"choice": "0", "strength": "1"}, **HX)
    assert reply.status_code == 409
    assert "deactivated" in reply.content.decode()
    reply = client.post(url, {"choice": "0", "strength": "1"})  # without htmx: the page
    assert reply.status_code == 409 and "deactivated" in reply.content.decode()
    assert not Judgment.objects.exists()


def test_a_deactivated_project_refuses_demonstrations(make_user, project, compare_tasks):
    from annotation.datasets import bulk
    from annotation.specs import PromptSpec

    bulk.create_tasks(
        project=project,
        specs=[PromptSpec(messages=[{"role": "user", "content": "Write"}], responses=[])],
    )
    Task.objects.filter(kind=Task.Kind.COMPARE).delete()
    annotator = make_user("late-demo")
    lease = leasing.next_task(annotator=annotator, project=project)
    deactivate(project)
    client = APIClient()
    client.force_authenticate(annotator)
    body = {"task": lease.task_id, "text": "An ideal answer."}
    reply = client.post(V1 + "demonstrations/", body, format="json")
    assert reply.status_code == 409 and "deactivated" in reply.json()["detail"]
    assert not Demonstration.objects.exists()


def test_a_get_leases_nothing(make_user, project, compare_tasks):
    annotator = make_user("fresh")
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    url = reverse("workspace", args=[project.slug])
    for headers in ({}, HX):
        page = client.get(url, **headers)
        assert page.status_code == 200
        assert 'data-start="1"' in page.content.decode()
        assert 'method="post"' in page.content.decode()
    assert not Assignment.objects.exists()
    # a forged POST (no CSRF token) leases nothing either
    assert client.post(url).status_code == 403
    assert not Assignment.objects.exists()
    # the page's own form does: then the GET shows the live lease without leasing another
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    reply = client.post(url, {"csrfmiddlewaretoken": token.group(1)})
    assert reply.status_code == 302 and reply["Location"] == url
    assignment = Assignment.objects.get()
    shown = client.get(url).content.decode()
    assert f'data-assignment="{assignment.pk}"' in shown
    assert Assignment.objects.count() == 1


def test_without_javascript_a_submit_leads_straight_to_the_next_task(
    client, make_user, project, compare_tasks
):
    """No extra round trip: the submit (a POST) leases the next task, the redirect shows it."""
    client.force_login(make_user("no-js"))
    url = reverse("workspace", args=[project.slug])
    html = client.post(url, follow=True).content.decode()
    first = int(re.search(r'data-assignment="(\d+)"', html).group(1))
    reply = client.post(reverse("workspace-submit", args=[first]), {"choice": "0"})
    assert reply.status_code == 302 and reply["Location"] == url + "?done=judgment"
    page = client.get(reply["Location"]).content.decode()
    second = int(re.search(r'data-assignment="(\d+)"', page).group(1))
    assert second != first and "Saved." in page
