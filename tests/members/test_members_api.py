"""The members API (``/api/v1/projects/<pk>/members/`` and ``invitations/``) beyond the
authorization matrix: what it writes, and bad input as a 4xx with nothing written."""

import pytest
from rest_framework.test import APIClient

from annotation.models import Assignment, ProjectMembership
from annotation.projects import members
from annotation.workspace import leasing

pytestmark = [pytest.mark.django_db, pytest.mark.strict_membership]


def test_add_change_deactivate_and_invite(users, project, compare_tasks, client):
    lead = users["viewer"]  # a viewer account that manages this one project
    members.add_member(project=project, user=lead, role="manager")
    api = APIClient()
    api.force_authenticate(lead)
    url = f"/api/v1/projects/{project.pk}/members/"
    users["annotator"].email = "ann@example.org"
    users["annotator"].save()

    added = api.post(url, {"who": "ANN@example.org", "max_per_day": 3}, format="json")
    assert added.status_code == 201, added.json()
    assert (added.json()["username"], added.json()["role"]) == ("m-annotator", "annotator")
    for bad in ({"who": "nobody"}, {"who": "m-annotator"}, {"who": "m-outsider", "role": "boss"},
                {"who": "m-outsider", "max_judgments": -1}):  # fmt: skip
        assert api.post(url, bad, format="json").status_code == 400, bad
    assert ProjectMembership.objects.filter(project=project).count() == 2
    listed = api.get(url).json()
    assert {row["username"] for row in listed["results"]} == {"m-viewer", "m-annotator"}

    lease = leasing.next_task(annotator=users["annotator"], project=project)
    member = f"{url}{added.json()['id']}/"
    changed = api.patch(member, {"max_judgments": 10, "is_active": False}, format="json")
    assert changed.status_code == 200
    assert (changed.json()["max_judgments"], changed.json()["is_active"]) == (10, False)
    assert Assignment.objects.get(pk=lease.pk).state == Assignment.State.EXPIRED
    assert api.patch(f"{url}999999/", {"role": "viewer"}, format="json").status_code == 404

    invited = api.post(f"/api/v1/projects/{project.pk}/invitations/", {"role": "viewer"},
                       format="json")  # fmt: skip
    assert invited.status_code == 201
    link = invited.json()["link"]
    client.force_login(users["outsider"])
    assert client.post(link.replace("http://testserver", "")).status_code == 302
    assert ProjectMembership.objects.get(user=users["outsider"]).role == "viewer"
    assert "link" not in api.get(url).json()["results"][0]
    bad_days = {"role": "viewer", "expires_days": 0}
    assert api.post(f"/api/v1/projects/{project.pk}/invitations/", bad_days,
                    format="json").status_code == 400  # fmt: skip
