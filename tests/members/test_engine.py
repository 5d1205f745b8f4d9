"""Membership in the assignment engine, on both databases (``.ci/run`` runs this file on SQLite
and on PostgreSQL, where leasing and submitting take ``workspace/pg.py``): only members who
annotate lease and submit; caps refuse a new lease once reached; a deactivated member's lease
goes back to the pool at once and their submission is refused; the pages and the API agree."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.errors import CapReachedError, NotAMemberError, ProjectRoleError
from annotation.models import Assignment, Judgment, ProjectMembership
from annotation.projects import members
from annotation.roles import project_role
from annotation.workspace import judging, leasing

pytestmark = [pytest.mark.django_db(transaction=False), pytest.mark.strict_membership]


def judge(user, project):
    assignment = leasing.next_task(annotator=user, project=project)
    first, second = assignment.display_order
    return judging.submit_judgment(
        assignment=assignment, annotator=user, ordering=[[first], [second]], strength=1
    )


def test_only_members_who_annotate_lease(users, project, compare_tasks, client):
    annotator, outsider = users["annotator"], users["outsider"]
    members.add_member(project=project, user=annotator)
    members.add_member(project=project, user=users["viewer"], role="viewer")
    assert leasing.next_task(annotator=annotator, project=project) is not None
    with pytest.raises(NotAMemberError):
        leasing.next_task(annotator=outsider, project=project)
    with pytest.raises(ProjectRoleError):
        leasing.next_task(annotator=users["viewer"], project=project)
    # admins and global managers need no membership (staff reach, as before)
    assert leasing.next_task(annotator=users["manager"], project=project) is not None
    assert not Assignment.objects.filter(annotator=outsider).exists()

    # the pages: the project is absent from the outsider's home and a 404 on its URLs
    client.force_login(outsider)
    assert project.slug.encode() not in client.get(reverse("home")).content
    for name in ("workspace", "workspace-guidelines", "workspace-history"):
        assert client.get(reverse(name, args=[project.slug])).status_code == 404, name
    assert client.post(reverse("workspace", args=[project.slug])).status_code == 404
    client.force_login(annotator)
    assert f'data-project="{project.slug}"' in client.get(reverse("home")).content.decode()

    api = APIClient()
    api.force_authenticate(outsider)
    assert api.post(f"/api/v1/projects/{project.pk}/next-task/").status_code == 404
    assert api.get(f"/api/v1/projects/{project.pk}/").status_code == 404


def test_a_cap_refuses_the_next_lease_once_reached(users, project, compare_tasks, client):
    annotator = users["annotator"]
    membership = members.add_member(project=project, user=annotator, max_judgments=2)
    judge(annotator, project)
    live = leasing.next_task(annotator=annotator, project=project)
    # a cap lowered under a live lease: that lease is still served, no new one after it
    members.update_member(membership=membership, max_judgments=1)
    assert leasing.next_task(annotator=annotator, project=project).pk == live.pk
    first, second = live.display_order
    judging.submit_judgment(
        assignment=live, annotator=annotator, ordering=[[first], [second]], strength=1
    )
    members.update_member(membership=membership, max_judgments=2)
    with pytest.raises(CapReachedError, match="cap of 2 judgments"):
        leasing.next_task(annotator=annotator, project=project)
    client.force_login(annotator)
    page = client.post(reverse("workspace", args=[project.slug]))
    assert page.status_code == 409 and b"cap of 2 judgments" in page.content
    api = APIClient()
    api.force_authenticate(annotator)
    answer = api.post(f"/api/v1/projects/{project.pk}/next-task/")
    assert answer.status_code == 409 and "cap of 2" in answer.json()["detail"]

    # a daily cap counts judgments since local midnight only
    members.update_member(membership=membership, max_judgments=None, max_per_day=2)
    with pytest.raises(CapReachedError, match="today"):
        leasing.next_task(annotator=annotator, project=project)
    Judgment.objects.filter(annotator=annotator).update(
        created_at=Judgment.objects.first().created_at - timedelta(days=1)
    )
    assert leasing.next_task(annotator=annotator, project=project) is not None
    assert Judgment.objects.filter(annotator=annotator).count() == 2


def test_deactivation_releases_the_lease_and_refuses_its_submission(
    users, project, compare_tasks, client
):
    annotator, other = users["annotator"], users["outsider"]
    membership = members.add_member(project=project, user=annotator)
    members.add_member(project=project, user=other)
    done = judge(annotator, project)
    lease = leasing.next_task(annotator=annotator, project=project)
    members.set_member_active(membership=membership, active=False)

    lease.refresh_from_db()
    assert lease.state == Assignment.State.EXPIRED
    first, second = lease.display_order
    with pytest.raises(NotAMemberError, match="no longer"):
        judging.submit_judgment(
            assignment=lease, annotator=annotator, ordering=[[first], [second]], strength=1
        )
    api = APIClient()
    api.force_authenticate(annotator)
    refused = api.post(
        f"/api/v1/assignments/{lease.pk}/submit/", {"ordering": [["A"], ["B"]]}, format="json"
    )
    assert refused.status_code == 404
    client.force_login(annotator)
    page = client.post(
        reverse("workspace-submit", args=[lease.pk]),
        {"choice": "0", "idempotency_key": "k-1"},
        HTTP_HX_REQUEST="true",
    )
    assert page.status_code == 409 and b"no longer a member" in page.content
    with pytest.raises(NotAMemberError):
        leasing.next_task(annotator=annotator, project=project)
    # the released task goes to the next annotator at once (overlap 1: it was the best one)
    assert leasing.next_task(annotator=other, project=project).task_id == lease.task_id
    assert Judgment.objects.filter(pk=done.pk).exists()  # past work stays

    members.set_member_active(membership=membership, active=True)
    assert leasing.next_task(annotator=annotator, project=project) is not None


def test_membership_costs_no_query_when_remembered(users, project, compare_tasks):
    """The lease of a member without caps asks nothing more than an admin's (the role and
    the membership are remembered per process); caps add one count."""
    annotator, manager = users["annotator"], users["manager"]
    membership = members.add_member(project=project, user=annotator)

    def lease_queries(user) -> int:
        project_role(user, project.pk)  # warm the per-process memo
        with CaptureQueriesContext(connection) as queries:
            leasing.next_task(annotator=user, project=project)
        return len(queries)

    staff = lease_queries(manager)
    Assignment.objects.all().delete()
    assert lease_queries(annotator) == staff
    members.update_member(membership=membership, max_per_day=100)
    Assignment.objects.all().delete()
    assert lease_queries(annotator) == staff + 1
    assert ProjectMembership.objects.get(pk=membership.pk).max_per_day == 100
