"""User-built queries (issue 17): the registry's MLflow-style filter runs LIKE as the database's
own LIKE (no regex to blow up), refuses values of the wrong type with a 400 / an inline
message, and is cancelled past ``QUERY_TIME_LIMIT_MS`` with a clear 503; integer query
parameters of the API's list endpoints are 400s when out of range or not whole numbers.
Run on SQLite and on PostgreSQL (``DATABASE_URL``)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from common.errors import DomainError
from common.filters import IntegerFilter
from config.api_urls import router
from models_registry import selectors
from models_registry.models import ModelVersion, RegisteredModel
from tests.api.conftest import build_world

SEARCH = "/api/v1/registry/model-versions/search"
PAGE = "/registry/"
HUGE = "99999999999999999999999"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def registry(db, make_user):
    """Two registered models, three versions whose sources hold LIKE's and GLOB's special
    characters, a viewer (API) and an admin (pages)."""
    rm = RegisteredModel.objects.create(name="rm-alpha", kind="reward")
    policy = RegisteredModel.objects.create(name="Policy-Beta", kind="sft")
    ModelVersion.objects.create(registered_model=rm, version=1, artifact_uri="s3://b/" + "a" * 42)
    ModelVersion.objects.create(
        registered_model=rm, version=2, artifact_uri="file:///models/rm_2/100%_done"
    )
    ModelVersion.objects.create(
        registered_model=policy, version=1, artifact_uri="hub://Org/Model[1]*?\\x"
    )
    api = APIClient()
    api.force_authenticate(make_user("q-viewer", role="viewer"))
    page = Client()
    page.force_login(make_user("q-admin", role="admin"))
    return api, page


def _labels(api, text: str) -> list[str]:
    response = api.get(SEARCH, {"filter": text})
    assert response.status_code == 200, response.content
    return [f"{v['name']}@{v['version']}" for v in response.json()["model_versions"]]


# (filter, expected labels: sorted by name then version descending)
LIKE_CASES = [
    ("name LIKE 'rm-%'", ["rm-alpha@2", "rm-alpha@1"]),
    ("name LIKE 'RM-%'", []),  # LIKE is case-sensitive
    ("name ILIKE 'RM-%'", ["rm-alpha@2", "rm-alpha@1"]),
    ("name LIKE 'policy%'", []),
    ("name ILIKE 'policy%'", ["Policy-Beta@1"]),
    ("name NOT LIKE 'rm-%'", ["Policy-Beta@1"]),
    ("name LIKE 'rm_alpha'", ["rm-alpha@2", "rm-alpha@1"]),  # _ is one character
    ("name LIKE 'rm_lpha'", []),
    ("source LIKE 'file:///models/rm_2/100%_done'", ["rm-alpha@2"]),
    ("source LIKE '%[1]*?\\x'", ["Policy-Beta@1"]),  # GLOB's specials and \ are literal
    ("source LIKE '%[1]%'", ["Policy-Beta@1"]),
    ("source LIKE '%*%'", ["Policy-Beta@1"]),
    ("source LIKE '%?%'", ["Policy-Beta@1"]),
    ("source LIKE '%\\%'", ["Policy-Beta@1"]),
    # the patterns of the report: a regex built from them backtracked for seconds
    ("source LIKE '%%%%%%%!'", []),
    ("source LIKE '" + "%" * 10 + "!'", []),
    ("source LIKE '" + "%a" * 12 + "!'", []),
    ("source LIKE '" + "%_" * 12 + "!'", []),
    ("source LIKE '" + "%a" * 12 + "'", ["rm-alpha@1"]),
    ("source ILIKE '" + "%A" * 12 + "%'", ["rm-alpha@1"]),
    ("source LIKE '%%%%%%%a'", ["rm-alpha@1"]),
]


@pytest.mark.parametrize(("text", "expected"), LIKE_CASES)
def test_like_is_the_databases_like_with_mlflow_semantics(registry, text, expected):
    api, _ = registry
    with CaptureQueriesContext(connection) as queries:
        assert _labels(api, text) == expected
    search = next(q["sql"] for q in queries if "models_registry_modelversion" in q["sql"])
    assert re.search(r" (I?LIKE|GLOB) ", search), search
    assert "REGEXP" not in search and " ~ " not in search


def test_registry_page_filters_with_like(registry):
    _, page = registry
    body = page.get(PAGE, {"filter": "source LIKE '%%%%%%%!'"}).content.decode()
    assert 'role="alert"' not in body
    body = page.get(PAGE, {"filter": "name ILIKE 'POLICY-%'"}).content.decode()
    assert "Policy-Beta" in body and 'role="alert"' not in body


BAD_TYPED = [
    "{f} = 'abc'",
    "{f} = " + HUGE,
    "{f} = '" + HUGE + "'",
    "{f} = -1",
    "{f} = '1.5'",
    "{f} != 'x'",
    "{f} IN ('a', 'b')",
    "{f} IN (1, " + HUGE + ")",
    "{f} IN (1, abc)",
    "{f} LIKE '1%'",
    "{f} ILIKE '1%'",
    "{f} NOT LIKE '1%'",
]
TYPED_FIELDS = ["version", "version_number", "run_id", "dataset_snapshot"]


@pytest.mark.parametrize("field", TYPED_FIELDS)
def test_typed_values_are_validated_on_the_api_and_the_page(registry, field):
    api, page = registry
    for template in BAD_TYPED:
        text = template.format(f=field)
        response = api.get(SEARCH, {"filter": text})
        assert response.status_code == 400, (text, response.content)
        detail = response.json()["detail"]
        assert field in detail or "list" in detail, (text, detail)
        with pytest.raises(DomainError):
            list(selectors.search_versions(text))
        shown = page.get(PAGE, {"filter": text})
        assert shown.status_code == 200, text
        assert 'role="alert"' in shown.content.decode(), text


def test_well_typed_values_still_match(registry):
    api, _ = registry
    assert _labels(api, "version = 2") == ["rm-alpha@2"]
    assert _labels(api, "version_number = '2'") == ["rm-alpha@2"]
    assert _labels(api, "version IN (1, '2') AND name = 'rm-alpha'") == ["rm-alpha@2", "rm-alpha@1"]
    assert _labels(api, "version = 2147483647") == []
    assert _labels(api, "run_id = 9223372036854775807") == []
    assert _labels(api, "dataset_snapshot IN (1, 2)") == []
    assert _labels(api, "name IN ('Policy-Beta')") == ["Policy-Beta@1"]
    assert _labels(api, "name = 'rm-alpha' AND version != 1") == ["rm-alpha@2"]


@pytest.fixture
def many_versions(registry):
    """Enough long sources that a LIKE comparing many characters at each position takes
    ~0.2 s (LIKE costs up to source length × pattern length per row: polynomial, not
    exponential, but a long pattern over many rows still needs the time limit)."""
    model = RegisteredModel.objects.create(name="bulk", kind="sft")
    ModelVersion.objects.bulk_create(
        ModelVersion(registered_model=model, version=n, artifact_uri="a" * 480 + str(n))
        for n in range(1, 4001)
    )
    return registry


SLOW = "source LIKE '%" + "a" * 20 + "!%'"


def test_a_query_past_the_time_limit_is_cancelled_with_a_clear_error(many_versions, settings):
    api, page = many_versions
    assert _labels(api, SLOW) == []  # the default limit (5 s) lets it finish
    settings.QUERY_TIME_LIMIT_MS = 1
    response = api.get(SEARCH, {"filter": SLOW})
    assert response.status_code == 503, response.content
    assert "1 ms" in response.json()["detail"]
    models = api.get("/api/v1/registry/registered-models/search", {"filter": "name LIKE '%!'"})
    assert models.status_code in (200, 503)  # fast enough or cancelled: never a 500
    shown = page.get(PAGE, {"filter": SLOW})
    assert shown.status_code == 200
    assert "1 ms limit" in shown.content.decode()
    # the connection is usable afterwards, with no limit left behind
    settings.QUERY_TIME_LIMIT_MS = 5000
    assert _labels(api, "name = 'Policy-Beta'") == ["Policy-Beta@1"]
    assert ModelVersion.objects.filter(artifact_uri__contains="!").count() == 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "0"


# ---------------------------------------------------------------- integer query parameters


@pytest.fixture
def api_world(make_user, principle_set, project, compare_tasks):
    world = build_world(make_user, principle_set, project, compare_tasks)
    api = APIClient()
    api.force_authenticate(world.users["admin"])
    return world, api


BAD_INTEGERS = [HUGE, "9223372036854775808", "-5", "abc", "1.5", "1e400", "NaN"]


@pytest.mark.parametrize("resource", ["judgments", "assignments", "demonstrations", "responses"])
def test_project_query_parameter_is_a_400_unless_a_whole_id(api_world, resource):
    world, api = api_world
    for value in BAD_INTEGERS:
        response = api.get(f"/api/v1/{resource}/", {"project": value})
        assert response.status_code == 400, (resource, value, response.content)
        assert "project" in response.json(), response.json()
    found = api.get(f"/api/v1/{resource}/", {"project": world.project.pk})
    assert found.status_code == 200 and found.json()["count"] > 0
    assert api.get(f"/api/v1/{resource}/", {"project": "9223372036854775807"}).json()["count"] == 0


def test_every_integer_filter_of_the_api_refuses_bad_values(api_world):
    _, api = api_world
    checked = []
    for prefix, viewset, _ in router.registry:
        filterset = getattr(viewset, "filterset_class", None)
        for name, spec in (filterset.base_filters if filterset else {}).items():
            if not isinstance(spec, IntegerFilter):
                continue
            checked.append(f"{prefix}?{name}")
            for value in BAD_INTEGERS:
                if value == "-5" and spec.extra["min_value"] < 0:
                    continue
                response = api.get(f"/api/v1/{prefix}/", {name: value})
                assert response.status_code == 400, (prefix, name, value, response.content)
                assert name in response.json()
            assert api.get(f"/api/v1/{prefix}/", {name: "1"}).status_code == 200
    assert {"principle-sets?version", "tasks?min_submitted", "judgments?project"} <= set(checked)


@pytest.mark.parametrize("annotators", [[int(HUGE)], [2**63], [-1], [0]])
def test_snapshot_annotator_ids_out_of_range_are_a_400(api_world, annotators):
    world, api = api_world
    response = api.post(
        "/api/v1/snapshots/",
        {"project": world.project.pk, "kind": "preference", "filters": {"annotators": annotators}},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "annotators" in response.json()["detail"]


def test_registry_pages_answer_huge_integers_without_a_server_error(registry):
    _, page = registry
    page.raise_request_exception = False
    for url in (
        f"/registry/compare/?a={HUGE}&b=1",
        "/registry/compare/?a=x&b=1",
        f"/registry/versions/{HUGE}/",
        f"/registry/generation/{HUGE}/",
    ):
        assert page.get(url).status_code == 404, url
