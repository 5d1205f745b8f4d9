"""The registry API (MLflow-shaped) and pages: every endpoint × every role, plus behaviour."""

from __future__ import annotations

import io
import tarfile

import pytest
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Prompt
from models_registry.models import GenerationJob, ModelVersion, StageChange

pytestmark = pytest.mark.django_db
ROLES = ("admin", "manager", "annotator", "viewer", "anonymous")
R = "/api/v1/registry/"
READERS = (200, 200, 403, 200, 401)
STAFF_GET = (200, 200, 403, 403, 401)
Q = "name=unit-rm&version=1"


def staff(ok):
    return (ok, ok, 403, 403, 401)


@pytest.fixture
def world(trained_world, roles):
    Prompt.objects.create(
        project=trained_world["project"], messages=[{"role": "user", "content": "Hi?"}]
    )
    job = GenerationJob.objects.create(project=trained_world["project"], params={})
    job.model_versions.set([trained_world["version"]])
    return {**trained_world, "roles": roles, "job": job}


def api_client(world, role):
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(world["roles"][role])
    return client


# (name, method, path, body, expected per ROLES)
MATRIX = [
    (
        "create model",
        "post",
        "registered-models/create",
        {"name": "new-rm", "kind": "reward"},
        staff(201),
    ),
    ("get model", "get", "registered-models/get?name=unit-rm", None, READERS),
    (
        "search models",
        "get",
        "registered-models/search?filter=kind%20%3D%20%27reward%27",
        None,
        READERS,
    ),
    ("latest versions", "get", "registered-models/get-latest-versions?name=unit-rm", None, READERS),
    (
        "create version",
        "post",
        "model-versions/create",
        {"name": "unit-rm", "kind": "reward", "source": "hf://org/rm"},
        staff(201),
    ),
    ("get version", "get", f"model-versions/get?{Q}", None, READERS),
    (
        "search versions",
        "get",
        "model-versions/search?filter=name%20LIKE%20%27unit%25%27",
        None,
        READERS,
    ),
    (
        "transition stage",
        "post",
        "model-versions/transition-stage",
        {"name": "unit-rm", "version": 1, "stage": "staging", "comment": "try"},
        staff(200),
    ),
    ("stage history", "get", f"model-versions/stage-history?{Q}", None, READERS),
    ("download uri", "get", f"model-versions/get-download-uri?{Q}", None, READERS),
    ("download artifacts", "get", f"model-versions/download-artifacts?{Q}", None, STAFF_GET),
    ("lineage", "get", f"model-versions/lineage?{Q}", None, READERS),
    ("model card", "get", f"model-versions/model-card?{Q}", None, READERS),
    ("compare", "get", "model-versions/compare?a=unit-rm@1&b=unit-rm@1", None, READERS),
    ("profile", "post", "model-versions/profile", {"name": "unit-rm", "version": 1}, staff(202)),
    (
        "generate",
        "post",
        "generation-jobs/create",
        {"project": "unit-project", "models": [{"name": "other", "version": 1}]},
        staff(201),
    ),
    ("generation job", "get", "generation-jobs/get?id={job}", None, STAFF_GET),
    ("leaderboard", "get", "leaderboard?project=unit-project&n_boot=5", None, READERS),
]


PAGES = [
    "/registry/",
    "/registry/versions/{v}/",
    "/registry/versions/{v}/card/",
    "/registry/versions/{v}/card/?download=1",
    "/registry/versions/{v}/artifact/",
    "/registry/compare/?a={v}&b={v}",
    "/registry/generate/",
    "/registry/generation/{job}/",
    "/registry/arena/unit-project/?n_boot=5",
]


def test_every_api_endpoint_by_role(world):
    """One world, every endpoint × role; each request in a savepoint that is rolled back."""
    from models_registry import services

    services.register_model_version(  # a policy to generate with
        name="other",
        kind="sft",
        artifact_uri=world["version"].artifact_uri,
        sha256="",
        size_bytes=0,
    )
    wrong = []
    for name, method, path, body, expected in MATRIX:
        url = R + path.replace("{job}", str(world["job"].pk))
        got = []
        for role in ROLES:
            with transaction.atomic():
                client = api_client(world, role)
                call = getattr(client, method)
                response = call(url, body, format="json") if body else call(url)
                got.append(response.status_code)
                transaction.set_rollback(True)
        if tuple(got) != expected:
            wrong.append(f"{name}: {dict(zip(ROLES, got, strict=True))}")
    assert not wrong, wrong


def test_every_page_is_for_staff_only(world):
    wrong = []
    for path in PAGES:
        url = path.format(v=world["version"].pk, job=world["job"].pk)
        got = []
        for role in ROLES:
            client = Client()
            if role != "anonymous":
                client.force_login(world["roles"][role])
            got.append(client.get(url).status_code)
        if tuple(got) != (200, 200, 403, 403, 302):
            wrong.append(f"{path}: {dict(zip(ROLES, got, strict=True))}")
    assert not wrong, wrong


def test_page_posts_are_for_staff_only(world):
    version = world["version"]
    for role, expected in (("annotator", 403), ("viewer", 403), ("manager", 302)):
        client = Client()
        client.force_login(world["roles"][role])
        response = client.post(f"/registry/versions/{version.pk}/stage/", {"stage": "staging"})
        assert response.status_code == expected, role
        response = client.post(f"/registry/versions/{version.pk}/profile/", {"method": "auto"})
        assert response.status_code == expected, role
    version.refresh_from_db()
    assert version.stage == "staging"
    assert StageChange.objects.get().changed_by == world["roles"]["manager"]
    assert version.model_discretion_profile["status"] == "queued"
    anonymous = Client().post(f"/registry/versions/{version.pk}/stage/", {"stage": "none"})
    assert anonymous.status_code == 302


def test_generate_page_queues_a_job(world):
    from models_registry import services

    policy = services.register_model_version(
        name="page-policy", kind="sft", artifact_uri="", sha256="", size_bytes=0
    )
    form = {"project": "unit-project", "models": [policy.pk], "samples_per_model": 2,
            "max_prompts": 5, "max_new_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 1,
            "engine": "auto", "queue": "cpu"}  # fmt: skip
    for role in ("annotator", "viewer"):
        client = Client()
        client.force_login(world["roles"][role])
        assert client.post("/registry/generate/", form).status_code == 403
    client = Client()
    client.force_login(world["roles"]["admin"])
    response = client.post("/registry/generate/", form)
    job = GenerationJob.objects.exclude(pk=world["job"].pk).get()
    assert response.status_code == 302 and response["Location"] == f"/registry/generation/{job.pk}/"
    assert job.params["samples_per_model"] == 2 and list(job.model_versions.all()) == [policy]
    assert job.status == "queued" and job.created_by == world["roles"]["admin"]
    reward = client.post("/registry/generate/", {**form, "models": [world["version"].pk]})
    assert reward.status_code == 200  # reward models are not offered as policies


def test_mlflow_shaped_flow(world):
    api = api_client(world, "admin")
    got = api.get(R + f"model-versions/get?{Q}").json()["model_version"]
    assert got["name"] == "unit-rm" and got["version"] == "1" and got["current_stage"] == "none"
    assert got["links"]["lineage"].endswith(f"lineage?{Q}")

    moved = api.post(
        R + "model-versions/transition-stage",
        {
            "name": "unit-rm",
            "version": 1,
            "stage": "production",
            "comment": "ship it",
        },
        format="json",
    )
    assert (
        moved.status_code == 200 and moved.json()["model_version"]["current_stage"] == "production"
    )
    history = api.get(R + f"model-versions/stage-history?{Q}").json()["stage_changes"]
    assert history[0]["to_stage"] == "production" and history[0]["changed_by"] == "reg-admin"
    latest = api.get(R + "registered-models/get-latest-versions?name=unit-rm&stages=production")
    assert [v["version"] for v in latest.json()["model_versions"]] == ["1"]

    created = api.post(
        R + "model-versions/create",
        {
            "name": "unit-rm",
            "kind": "reward",
            "source": world["version"].artifact_uri,
            "parents": [{"name": "unit-rm", "version": 1, "role": "base"}],
            "dataset_snapshot": world["snapshot"].pk,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()["model_version"]
    assert body["version"] == "2" and len(body["sha256"]) == 64
    assert body["parents"] == [{"role": "base", "name": "unit-rm", "version": "1"}]
    assert ModelVersion.objects.get(version=2).annotator_contributions

    page1 = api.get(R + "model-versions/search?max_results=1&order_by=version%20DESC").json()
    assert [v["version"] for v in page1["model_versions"]] == ["2"]
    page2 = api.get(
        R + f"model-versions/search?max_results=1&page_token="
        f"{page1['next_page_token']}&order_by=version%20DESC"
    ).json()
    assert [v["version"] for v in page2["model_versions"]] == ["1"]
    assert page2["next_page_token"] is None

    card = api.get(R + f"model-versions/model-card?{Q}")
    assert card["Content-Type"].startswith("text/markdown")
    assert (
        b"# Model card: unit-rm@1" in card.content
        and b"attachment" in card["Content-Disposition"].encode()
    )
    lineage = api.get(R + f"model-versions/lineage?{Q}").json()
    assert lineage["snapshots"][0]["id"] == world["snapshot"].pk
    compare = api.get(R + "model-versions/compare?a=unit-rm@1&b=unit-rm@2").json()
    assert compare["a"]["label"] == "unit-rm@1" and compare["b"]["label"] == "unit-rm@2"

    download = api.get(R + f"model-versions/download-artifacts?{Q}")
    data = b"".join(download.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert "rm/config.json" in tar.getnames()


def test_api_errors_are_4xx(world):
    api = api_client(world, "admin")
    assert api.get(R + "model-versions/get?name=unit-rm&version=9").status_code == 404
    assert api.get(R + "model-versions/get?name=unit-rm&version=x").status_code == 400
    assert api.get(R + "model-versions/search?filter=nonsense").status_code == 400
    assert api.get(R + "model-versions/compare?a=unit-rm&b=x@1").status_code == 400
    bad_source = api.post(
        R + "model-versions/create",
        {"name": "x", "kind": "sft", "source": "/etc/passwd"},
        format="json",
    )
    assert bad_source.status_code == 400
    duplicate = api.post(
        R + "registered-models/create", {"name": "unit-rm", "kind": "reward"}, format="json"
    )
    assert duplicate.status_code == 400
    reward_generates = api.post(
        R + "generation-jobs/create",
        {"project": "unit-project", "models": [{"name": "unit-rm", "version": 1}]},
        format="json",
    )
    assert reward_generates.status_code == 400
    remote = api.post(
        R + "model-versions/create",
        {"name": "hub", "kind": "sft", "source": "hf://org/m"},
        format="json",
    )
    assert remote.status_code == 201
    assert api.get(R + "model-versions/download-artifacts?name=hub&version=1").status_code == 400
