"""The members page and invitation links (issue 16, part 2): who reaches them, add by
username or e-mail (an unknown one is a form error, nothing added), caps and role saved,
deactivate after confirmation (live leases back to the pool) and reactivate, invitations
created, listed, revoked, joined, and refused when expired, revoked, used up or unknown."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, ProjectInvitation, ProjectMembership
from annotation.projects import members
from annotation.workspace import leasing

pytestmark = [pytest.mark.django_db, pytest.mark.strict_membership]


def page(project) -> str:
    return reverse("project-members", args=[project.slug])


def test_who_reaches_the_members_page(client, users, project):
    """Admins, global managers and the project's managers; a member of another role gets a
    403, a non-member a 404, anonymous the login page."""
    lead = users["viewer"]
    members.add_member(project=project, user=lead, role="manager")
    members.add_member(project=project, user=users["annotator"], role="annotator")
    expected = {"admin": 200, "manager": 200, "viewer": 200, "annotator": 403, "outsider": 404}
    for name, status in expected.items():
        client.force_login(users[name])
        assert client.get(page(project)).status_code == status, name
        # the project's other staff page follows the same rule
        settings_page = reverse("project-settings", args=[project.slug])
        assert client.get(settings_page).status_code == status, name
    client.logout()
    response = client.get(page(project))
    assert response.status_code == 302 and response.url.startswith("/login/?next=")


def test_add_by_username_or_email_then_search_and_paginate(client, users, project, make_user):
    client.force_login(users["manager"])
    users["viewer"].email = "Vera@Example.org"
    users["viewer"].save()
    response = client.post(
        page(project),
        {"who": "m-annotator", "role": "annotator", "max_judgments": "5", "max_per_day": ""},
    )
    assert response.status_code == 302
    client.post(page(project), {"who": "vera@example.org", "role": "viewer"})
    rows = {
        m.user.username: (m.role, m.max_judgments, m.max_per_day, m.added_by_id)
        for m in ProjectMembership.objects.filter(project=project).select_related("user")
    }
    assert rows == {
        "m-annotator": ("annotator", 5, None, users["manager"].pk),
        "m-viewer": ("viewer", None, None, users["manager"].pk),
    }
    # unknown user, or one already a member: an inline error, nothing added
    for who in ("nobody", "m-annotator"):
        response = client.post(page(project), {"who": who, "role": "annotator"})
        assert response.status_code == 422
        assert response.context["add_form"].errors["who"]
    negative = client.post(
        page(project), {"who": "m-outsider", "role": "annotator", "max_per_day": "-1"}
    )
    assert negative.status_code == 422
    assert ProjectMembership.objects.filter(project=project).count() == 2

    html = client.get(page(project)).content.decode()
    for label in ("Username or e-mail", "Max judgments", "Max per day", "Add member",
                  "Expires in days", "Create invitation link", "Deactivate", "Save"):  # fmt: skip
        assert label in html
    found = client.get(page(project), {"q": "EXAMPLE.ORG"})
    assert [m.user.username for m in found.context["page"].object_list] == ["m-viewer"]

    for n in range(51):
        members.add_member(project=project, user=make_user(f"bulk-{n:02}"))
    second = client.get(page(project), {"page": 2})
    assert second.context["page"].number == 2
    assert len(second.context["page"].object_list) == 53 - 50


def test_caps_and_role_saved_then_deactivate_releases_the_lease(
    client, users, project, compare_tasks
):
    annotator = users["annotator"]
    membership = members.add_member(project=project, user=annotator)
    lease = leasing.next_task(annotator=annotator, project=project)
    client.force_login(users["admin"])
    update = reverse("project-member-update", args=[project.slug, membership.pk])
    client.post(update, {"role": "annotator", "max_judgments": "3", "max_per_day": "2"})
    membership.refresh_from_db()
    assert (membership.max_judgments, membership.max_per_day) == (3, 2)

    deactivate = reverse("project-member-deactivate", args=[project.slug, membership.pk])
    confirm = client.get(deactivate)  # a confirmation page first: nothing changes yet
    assert confirm.status_code == 200 and b"Deactivate" in confirm.content
    membership.refresh_from_db()
    assert membership.is_active
    assert client.post(deactivate).status_code == 302
    membership.refresh_from_db()
    lease.refresh_from_db()
    assert not membership.is_active and membership.deactivated_at is not None
    assert lease.state == Assignment.State.EXPIRED and lease.leased_until <= timezone.now()
    # the task is free for someone else at once
    other = make_member(project, users["outsider"])
    assert leasing.next_task(annotator=other, project=project).task_id == lease.task_id
    assert b"Reactivate" in client.get(page(project)).content

    client.post(reverse("project-member-reactivate", args=[project.slug, membership.pk]))
    membership.refresh_from_db()
    assert membership.is_active and membership.deactivated_at is None


def make_member(project, user, role="annotator"):
    members.add_member(project=project, user=user, role=role)
    return user


def test_invitation_link_join_and_its_refusals(client, users, project):
    client.force_login(users["manager"])
    response = client.post(page(project), {"invite_role": "annotator", "expires_days": "7"})
    link = response.context["invitation_link"]
    assert link.startswith("http://testserver/invitations/")
    assert f'id="invitation-link" value="{link}"' in response.content.decode()
    token = link.rstrip("/").rsplit("/", 1)[1]
    invitation = ProjectInvitation.objects.get()
    assert token not in invitation.token_hash  # only the hash is stored
    assert b"Revoke" in client.get(page(project)).content

    url = reverse("invitation", args=[token])
    client.logout()
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous.url == f"/login/?next={url}"
    client.force_login(users["outsider"])
    shown = client.get(url)
    assert shown.status_code == 200 and project.name in shown.content.decode()
    joined = client.post(url)
    assert joined.status_code == 302
    assert joined.url == reverse("workspace", args=[project.slug])
    assert ProjectMembership.objects.get(user=users["outsider"]).role == "annotator"
    # used up (max_uses 1)
    client.force_login(users["viewer"])
    assert client.get(url).status_code == 410
    assert client.post(url).status_code == 410
    assert not ProjectMembership.objects.filter(user=users["viewer"]).exists()
    assert client.get(reverse("invitation", args=["not-a-token"])).status_code == 404

    expired, expired_token = members.create_invitation(project=project, role="viewer")
    ProjectInvitation.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert client.get(reverse("invitation", args=[expired_token])).status_code == 410
    revoked, revoked_token = members.create_invitation(project=project, role="viewer")
    client.force_login(users["manager"])
    client.post(reverse("project-invitation-revoke", args=[project.slug, revoked.pk]))
    client.force_login(users["viewer"])
    assert client.get(reverse("invitation", args=[revoked_token])).status_code == 410

    _, live_token = members.create_invitation(project=project, role="viewer")
    assert client.post(reverse("invitation", args=[live_token])).url == reverse(
        "quality:project", args=[project.slug]
    )


def test_add_member_command(users, project):
    users["viewer"].email = "v@example.org"
    users["viewer"].save()
    call_command(
        "add_member", project=project.slug, user="v@example.org", role="annotator",
        max_judgments=10, max_per_day=4,
    )  # fmt: skip
    membership = ProjectMembership.objects.get(user=users["viewer"], project=project)
    assert (membership.role, membership.max_judgments, membership.max_per_day) == (
        "annotator", 10, 4,
    )  # fmt: skip


def test_a_creator_who_is_not_admin_manages_the_project(users, principle_set):
    from annotation.projects import services

    made = services.create_project(
        name="Led",
        slug="led",
        principle_set=principle_set,
        created_by=users["manager"],
        task_kinds=["compare"],
    )
    assert ProjectMembership.objects.get(project=made).role == "manager"
    by_admin = services.create_project(
        name="Admin's",
        slug="admins",
        principle_set=principle_set,
        created_by=users["admin"],
        task_kinds=["compare"],
    )
    assert not ProjectMembership.objects.filter(project=by_admin).exists()
