"""The REST annotator path (next-task, submit) served like the htmx workspace: remembered roles,
tokens served from the shared cache, the workspace's one-statement reads and lean answers."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import AnnotatorProfile

pytestmark = pytest.mark.django_db
V1 = "/api/v1/"


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_a_role_change_takes_effect_at_once_in_this_process(make_user, project, compare_tasks):
    user = make_user("role-change")
    client = token_client(user)
    url = V1 + f"projects/{project.pk}/next-task/"
    assert client.post(url).status_code == 200  # the role is remembered now
    profile = AnnotatorProfile.objects.get(user=user)
    profile.role = AnnotatorProfile.Role.VIEWER
    profile.save()
    assert client.post(url).status_code == 403
