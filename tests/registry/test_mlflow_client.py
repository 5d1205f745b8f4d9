"""The real MLflow client (mlflow-skinny's ``MlflowClient``) against a live server: it lists,
reads and promotes our model versions through ``/api/2.0/mlflow/`` with a Bearer token."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from models_registry import services
from models_registry.models import ModelVersion, StageChange

mlflow_client = pytest.importorskip("mlflow.tracking", reason="mlflow-skinny (dev extra)")
from mlflow.exceptions import MlflowException  # noqa: E402

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # MLflow deprecates stages (our registry's vocabulary) in favour of aliases
    pytest.mark.filterwarnings("ignore:.*Model registry stages:FutureWarning"),
]


@pytest.fixture
def world(make_user, isolated_artifacts, tmp_path):
    """Two registered models: rm-a (reward, versions 1 and 2, v1 in production) and sft-b."""
    versions = {}
    for name, kind, count in (("rm-a", "reward", 2), ("sft-b", "sft", 1)):
        for number in range(1, count + 1):
            folder = isolated_artifacts / tmp_path.name / name / str(number)
            folder.mkdir(parents=True)
            (folder / "config.json").write_text('{"model_type": "gpt2"}')
            versions[(name, number)] = services.register_model_version(
                name=name,
                kind=kind,
                artifact_uri=str(folder),
                sha256=f"{number:064x}",
                size_bytes=22,
                parents={"base": versions.get((name, number - 1))},
            )
    services.set_stage(versions[("rm-a", 1)], "production")
    users = {role: make_user(f"ml-{role}", role=role) for role in ("manager", "viewer")}
    tokens = {role: Token.objects.create(user=user).key for role, user in users.items()}
    return {"versions": versions, "users": users, "tokens": tokens}


@pytest.fixture
def client_as(live_server, monkeypatch):
    """``client_as(token)``: an ``MlflowClient`` on the live server sending that token. The
    client keeps its HTTP connections alive, and with them the server's request threads: those
    close their database connection after each request (no persistent connections)."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)

    def make(token: str | None):
        if token is None:
            monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        else:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        return mlflow_client.MlflowClient(
            tracking_uri=live_server.url, registry_uri=live_server.url
        )

    return make


def test_client_lists_reads_and_pages(world, client_as):
    client = client_as(world["tokens"]["viewer"])
    first = client.search_registered_models(max_results=1, order_by=["name ASC"])
    assert [m.name for m in first] == ["rm-a"]
    assert first.token
    second = client.search_registered_models(
        max_results=1, order_by=["name ASC"], page_token=first.token
    )
    assert [m.name for m in second] == ["sft-b"] and not second.token
    assert [m.name for m in client.search_registered_models(filter_string="name LIKE 'rm-%'")] == [
        "rm-a"
    ]
    newest_first = client.search_registered_models(order_by=["creation_timestamp DESC"])
    assert [m.name for m in newest_first] == ["sft-b", "rm-a"]

    model = client.get_registered_model("rm-a")
    assert model.tags == {"kind": "reward"}
    assert {(v.version, v.current_stage) for v in model.latest_versions} == {
        ("1", "Production"),
        ("2", "None"),
    }

    found = client.search_model_versions("name='rm-a'")
    assert sorted(v.version for v in found) == ["1", "2"]
    version = client.get_model_version("rm-a", "2")
    assert version.current_stage == "None"
    assert version.source == world["versions"][("rm-a", 2)].artifact_uri
    assert version.tags["sha256"] == f"{2:064x}"
    assert version.tags["parents"] == "base=rm-a@1"

    latest = client.get_latest_versions("rm-a", stages=["Production"])
    assert [(v.version, v.current_stage) for v in latest] == [("1", "Production")]
    assert client.get_model_version_download_uri("sft-b", "1") == str(
        world["versions"][("sft-b", 1)].artifact_uri
    )

    with pytest.raises(MlflowException) as missing:
        client.get_model_version("rm-a", "9")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_manager_promotes_with_archive_existing(world, client_as):
    client = client_as(world["tokens"]["manager"])
    promoted = client.transition_model_version_stage(
        "rm-a", "2", "Production", archive_existing_versions=True
    )
    assert promoted.current_stage == "Production"
    stages = dict(
        ModelVersion.objects.filter(registered_model__name="rm-a").values_list("version", "stage")
    )
    assert stages == {1: "archived", 2: "production"}
    change = StageChange.objects.get(
        model_version__version=2, model_version__registered_model__name="rm-a"
    )
    assert (change.from_stage, change.to_stage) == ("none", "production")
    assert change.changed_by == world["users"]["manager"]
    assert StageChange.objects.filter(
        model_version=world["versions"][("rm-a", 1)], to_stage="archived"
    ).exists()

    with pytest.raises(MlflowException) as bad:
        client.transition_model_version_stage("rm-a", "2", "Shipped")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_refusals(world, client_as):
    viewer = client_as(world["tokens"]["viewer"])
    with pytest.raises(MlflowException) as denied:
        viewer.transition_model_version_stage("rm-a", "2", "Staging")
    assert denied.value.error_code == "PERMISSION_DENIED"
    assert denied.value.get_http_status_code() == 403
    assert ModelVersion.objects.get(pk=world["versions"][("rm-a", 2)].pk).stage == "none"

    for token in ("not-a-token", None):
        with pytest.raises(MlflowException) as refused:
            client_as(token).search_registered_models()
        assert refused.value.error_code == "UNAUTHENTICATED"
        assert refused.value.get_http_status_code() == 401


def test_token_scheme_and_error_shape(world, live_server):
    import requests

    url = f"{live_server.url}/api/2.0/mlflow/model-versions/get"
    headers = {"Authorization": f"Token {world['tokens']['viewer']}"}
    found = requests.get(url, params={"name": "rm-a", "version": "1"}, headers=headers, timeout=10)
    assert (
        found.status_code == 200 and found.json()["model_version"]["current_stage"] == "Production"
    )
    missing = requests.get(
        url, params={"name": "nope", "version": "1"}, headers=headers, timeout=10
    )
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    bad = requests.get(url, params={"name": "rm-a", "version": "x"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "version" in bad.json()["message"]


ROLES = ("admin", "manager", "annotator", "viewer", "anonymous")
READERS = (200, 200, 403, 200, 401)
M = "/api/2.0/mlflow/"
MATRIX = [
    ("get", "registered-models/search?max_results=5", None, READERS),
    ("get", "registered-models/get?name=rm-a", None, READERS),
    ("post", "registered-models/get-latest-versions", {"name": "rm-a"}, READERS),
    ("get", "registered-models/get-latest-versions?name=rm-a", None, READERS),
    ("get", "model-versions/search?filter=name%3D%27rm-a%27", None, READERS),
    ("get", "model-versions/get?name=rm-a&version=1", None, READERS),
    ("get", "model-versions/get-download-uri?name=rm-a&version=1", None, READERS),
    (
        "post",
        "model-versions/transition-stage",
        {"name": "rm-a", "version": "2", "stage": "Staging"},
        (200, 200, 403, 403, 401),
    ),
]


def test_every_mlflow_endpoint_by_role(world, make_user):
    from django.db import transaction
    from rest_framework.test import APIClient

    users = {**world["users"], "admin": make_user("ml-admin", role="admin")}
    users["annotator"] = make_user("ml-annotator", role="annotator")
    wrong = []
    for method, path, body, expected in MATRIX:
        got = []
        for role in ROLES:
            with transaction.atomic():
                client = APIClient()
                if role != "anonymous":
                    client.force_authenticate(users[role])
                response = getattr(client, method)(M + path, body, format="json")
                got.append(response.status_code)
                if response.status_code != 200:
                    assert set(response.json()) == {"error_code", "message"}, response.json()
                transaction.set_rollback(True)
        if tuple(got) != expected:
            wrong.append(f"{method} {path}: {dict(zip(ROLES, got, strict=True))}")
    assert not wrong, wrong
