"""The REST annotator path (next-task, submit) served like the htmx workspace: remembered roles,
tokens served from the shared cache, the workspace's one-statement reads and lean answers."""

import copy
import re
import time
from array import array
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from annotation.models import AnnotatorProfile, Assignment, Judgment, PrincipleVerdict
from annotation.workspace import pg
from annotation.workspace.serializers import (
    AssignmentSerializer,
    JudgmentSerializer,
    SubmitSerializer,
)

pytestmark = pytest.mark.django_db
V1 = "/api/v1/"
HX = {"HTTP_HX_REQUEST": "true"}


def token_client(user) -> APIClient:
    client = APIClient()
    key = Token.objects.get_or_create(user=user)[0].key
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
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


@contextmanager
def statements():
    """Every statement sent to the database: Django's queries and the PostgreSQL fast path's
    own (``workspace.pg.prepared_cursor``, which Django's query log does not see)."""
    raw: list[str] = []
    real = pg.prepared_cursor

    class Counting:
        def __init__(self, cursor) -> None:
            self.cursor = cursor

        def execute(self, sql, *args, **kwargs):
            raw.append(str(sql))
            return self.cursor.execute(sql, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.cursor, name)

    @contextmanager
    def counted():
        with real() as cursor:
            yield Counting(cursor)

    sent: list[str] = []
    pg.prepared_cursor = counted
    try:
        with CaptureQueriesContext(connection) as queries:
            yield sent
    finally:
        pg.prepared_cursor = real
    sent.extend(q["sql"] for q in queries.captured_queries)
    sent.extend(raw)


def htmx_cycle(client, project) -> tuple[list[str], list[str]]:
    with statements() as work:
        page = client.post(reverse("workspace", args=[project.slug]), **HX)  # leasing is a POST
    html = page.content.decode()
    pk = int(re.search(r'data-assignment="(\d+)"', html).group(1))
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', html).group(1)
    form = {"idempotency_key": key, "choice": "1", "strength": "2", "v-harmless": "1",
            "v-honest": "tie", "decisive": ["harmless"]}  # fmt: skip
    with statements() as submit:
        reply = client.post(reverse("workspace-submit", args=[pk]), form, **HX)
    assert reply.status_code == 200 and b'data-done="judgment"' in reply.content
    return work, submit


def api_cycle(client, project, key: str) -> tuple[list[str], list[str]]:
    with statements() as lease:
        reply = client.post(V1 + f"projects/{project.pk}/next-task/")
    assert reply.status_code == 200
    body = {"ordering": [["B"], ["A"]], "strength": 2, "decisive": ["harmless"],
            "verdicts": {"harmless": "B", "honest": "tie"}, "idempotency_key": key}  # fmt: skip
    with statements() as submit:
        answer = client.post(V1 + f"assignments/{reply.json()['id']}/submit/", body, format="json")
    assert answer.status_code == 201
    return lease, submit


def test_the_api_cycle_sends_no_more_statements_than_the_htmx_cycle(
    client, make_user, project, compare_tasks
):
    client.force_login(make_user("htmx-annotator"))
    api = token_client(make_user("api-annotator"))
    htmx_cycle(client, project)  # the first cycle fills the caches (role, project, principles)
    api_cycle(api, project, "warm")
    work, htmx_submit = htmx_cycle(client, project)
    lease, api_submit = api_cycle(api, project, "measured")
    counts = {"htmx work": len(work), "htmx submit": len(htmx_submit),
              "api next-task": len(lease), "api submit": len(api_submit)}  # fmt: skip
    assert len(lease) <= len(work), (counts, lease)
    assert len(api_submit) <= len(htmx_submit), (counts, api_submit)
    every = " ".join(lease + api_submit)
    assert "authtoken_token" not in every or not settings.SHARED_CACHE
    assert "annotation_annotatorprofile" not in every  # the remembered role
    assert "annotation_principleset" not in " ".join(lease)  # the cached project


def test_the_lean_answers_are_the_serializers_answers(make_user, project, compare_tasks):
    client = token_client(make_user("lean"))
    lease = client.post(V1 + f"projects/{project.pk}/next-task/")
    again = client.post(V1 + f"projects/{project.pk}/next-task/")  # the live lease
    stored = Assignment.objects.select_related("task__prompt").get(pk=lease.json()["id"])
    expected = JSONRenderer().render(AssignmentSerializer(stored).data)
    assert lease.content == expected and again.content == expected
    body = {
        "ordering": [["A"], ["B"]],
        "strength": 1,
        "verdicts": {"helpful": "A", "harmless": "A", "honest": "n/a"},
        "decisive": ["helpful", "harmless"],  # not in document order
        "rationale": "Clearer.",
        "confidence": 3,
        "time_spent_ms": 1200,
        "idempotency_key": "lean-1",
    }
    url = V1 + f"assignments/{stored.pk}/submit/"
    answer = client.post(url, body, format="json")
    assert answer.status_code == 201
    judgment = (
        Judgment.objects.select_related("task")
        .prefetch_related(
            Prefetch("verdicts", queryset=PrincipleVerdict.objects.select_related("principle")),
            "decisive_principles",
        )
        .get(pk=answer.json()["id"])
    )
    expected = JSONRenderer().render(JudgmentSerializer(judgment).data)
    assert answer.content == expected
    assert answer.json()["decisive"] == ["harmless", "helpful"]
    replay = client.post(url, body, format="json")  # read back: the same answer
    assert replay.status_code == 201 and replay.content == expected


def test_someone_elses_or_a_malformed_id_is_a_404_and_staff_are_refused_by_the_service(
    make_user, project, compare_tasks
):
    owner, other = make_user("owner"), make_user("other")
    manager = make_user("a-manager", role="manager")
    lease = token_client(owner).post(V1 + f"projects/{project.pk}/next-task/").json()
    body = {"ordering": [["A"], ["B"]], "idempotency_key": "not-mine"}
    for pk in (lease["id"], "x1", 2**63, 2**64, 0):
        url = V1 + f"assignments/{pk}/submit/"
        assert token_client(other).post(url, body, format="json").status_code == 404, pk
    url = V1 + f"assignments/{lease['id']}/submit/"
    assert token_client(manager).post(url, body, format="json").status_code == 403
    for pk in ("x1", 2**63, 2**64, 0, 10**6):
        assert token_client(other).post(V1 + f"projects/{pk}/next-task/").status_code == 404


def test_an_inactive_project_is_a_404_for_annotators_and_empty_for_staff(
    make_user, project, compare_tasks
):
    annotator, manager = make_user("ann"), make_user("mgr", role="manager")
    url = V1 + f"projects/{project.pk}/next-task/"
    assert token_client(annotator).post(url).status_code == 200  # caches the active project
    project.is_active = False
    project.save()
    assert token_client(annotator).post(url).status_code == 404
    assert token_client(manager).post(url).status_code == 204


@pytest.mark.parametrize(
    "data",
    [
        {"ordering": [["B"], ["A"]], "strength": 2, "verdicts": {"harmless": "B"}},
        {"ordering": [["A", "B"]], "decisive": [], "confidence": 5, "time_spent_ms": 10},
        {"ordering": []},
        {"ordering": [[]], "strength": 9, "confidence": "x", "decisive": "harmless"},
        {"ordering": [["A"]], "verdicts": [], "rationale": None, "idempotency_key": "k" * 101},
        {},
        "not an object",
    ],
)
def test_fields_built_once_validate_as_drf_builds_them_per_instance(data):
    fresh = type(
        "Fresh", (serializers.Serializer,), copy.deepcopy(SubmitSerializer._declared_fields)
    )
    for _ in range(2):  # the second instance reuses the fields the first built
        once, per_instance = SubmitSerializer(data=data), fresh(data=data)
        assert once.is_valid() == per_instance.is_valid()
        assert once.errors == per_instance.errors
        if not once.errors:
            assert once.validated_data == per_instance.validated_data


def test_the_user_throttle_keeps_drfs_sliding_window(settings, make_user):
    rates = {"user": "3/min", "anon": "600/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    user = make_user("busy")
    client = token_client(user)
    cache.set(f"throttle_user_{user.pk}", [time.time() - 1], 60)  # as DRF stores it
    assert [client.get(V1 + "me/").status_code for _ in range(3)] == [200, 200, 429]
    history = cache.get(f"throttle_user_{user.pk}")
    assert isinstance(history, array) and len(history) == 3
