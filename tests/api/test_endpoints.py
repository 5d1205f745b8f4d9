"""API behaviour beyond the authorization matrix: blindness, auth schemes, submit by slot,
bulk prompts, uploads, snapshots, streaming exports, principle-set versions, webhook_services."""

import hashlib
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import (
    DatasetSnapshot,
    ImportJob,
    Judgment,
    Prompt,
    Task,
    WebhookDelivery,
)
from annotation.tasks import build_snapshot, run_import_job
from annotation.webhooks import services as webhook_services
from tests.api.conftest import client_for

V1 = "/api/v1/"


def walk(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


@pytest.mark.django_db
def test_annotators_never_see_sources_or_other_peoples_work(world):
    client = client_for(world, "annotator")
    lease = client.post(V1 + f"projects/{world.project.pk}/next-task/").json()
    assert [r["slot"] for r in lease["responses"]] == ["A", "B"]
    assert set(lease["responses"][0]) == {"slot", "text"}
    bodies = [lease]
    for path in (
        "assignments/",
        "judgments/",
        "demonstrations/",
        "projects/",
        "principles/",
        f"judgments/{world.j1.pk}/",
        f"assignments/{world.a1.pk}/",
        "me/",
    ):
        response = client.get(V1 + path)
        assert response.status_code == 200, path
        bodies.append(response.json())
    for body in bodies:
        keys = {key for key, _ in walk(body)}
        assert "source" not in keys and "display_order" not in keys
        assert "model:a@1" not in json.dumps(body)
    judgments = client.get(V1 + "judgments/").json()["results"]
    assert {j["annotator"] for j in judgments} == {world.users["annotator"].pk}
    assert client.get(V1 + f"judgments/{world.j2.pk}/").status_code == 404


@pytest.mark.django_db
def test_viewers_read_responses_without_sources_staff_with(world):
    viewer = client_for(world, "viewer").get(V1 + f"tasks/{world.tasks[0].pk}/").json()
    assert "source" not in viewer["responses"][0]
    staff = client_for(world, "manager").get(V1 + f"tasks/{world.tasks[0].pk}/").json()
    assert {r["source"] for r in staff["responses"]} == {"model:a@1", "model:b@1"}
    prompt = client_for(world, "viewer").get(V1 + f"prompts/{world.prompt.pk}/").json()
    assert "source" not in prompt["responses"][0]


@pytest.mark.django_db
def test_token_and_session_authentication(world):
    client = APIClient()
    answer = client.post(
        V1 + "auth/token/", {"username": "api-viewer", "password": "pw-for-tests-1"}
    )
    token = answer.json()["token"]
    assert token == Token.objects.get(user=world.users["viewer"]).key
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(V1 + "me/").json()["role"] == "viewer"
    session = APIClient(enforce_csrf_checks=True)
    assert session.login(username="api-manager", password="pw-for-tests-1")
    assert session.get(V1 + "me/").json()["role"] == "manager"
    assert session.post(V1 + "projects/", {}, format="json").status_code == 403  # no CSRF token
    anonymous = APIClient().get(V1 + "me/")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_submit_by_slot_is_idempotent_and_emits_a_webhook(
    world, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(webhook_services, "_enqueue", queued.append)
    webhook_services.create_webhook(url="https://example.org/j", events=["judgment.created"])
    client = client_for(world, "annotator")
    lease = world.open_lease
    body = {
        "ordering": [["B"], ["A"]],
        "strength": 3,
        "verdicts": {"harmless": "B", "honest": "tie"},
        "decisive": ["harmless"],
        "idempotency_key": "k-1",
    }
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(V1 + f"assignments/{lease.pk}/submit/", body, format="json")
    assert first.status_code == 201, first.json()
    again = client.post(V1 + f"assignments/{lease.pk}/submit/", body, format="json")
    assert again.json()["id"] == first.json()["id"]
    judgment = Judgment.objects.get(pk=first.json()["id"])
    a, b = lease.display_order
    assert judgment.ordering == [[b], [a]] and judgment.origin == "api"
    # blind: the answer names responses by the slots the annotator was shown, never by id
    assert first.json()["ordering"] == [["B"], ["A"]]
    verdicts = {v["principle"]: v["preferred_slot"] for v in first.json()["verdicts"]}
    assert verdicts["harmless"] == "B" and verdicts["honest"] is None
    delivery = WebhookDelivery.objects.get(event="judgment.created")
    assert queued == [delivery.pk]
    assert delivery.payload["judgment_id"] == judgment.pk
    assert delivery.payload["annotator_id"].startswith("a-")  # a pseudonym, not a user id
    bad = client.post(
        V1 + f"assignments/{world.a1.pk}/submit/", {"ordering": [["Z"]]}, format="json"
    )
    assert bad.status_code in {400, 409}


@pytest.mark.django_db
def test_bulk_prompts_are_all_or_nothing_naming_the_record(world):
    client = client_for(world, "manager")
    url = V1 + f"projects/{world.project.pk}/prompts/"
    before = Prompt.objects.count()
    bad = client.post(
        url,
        {
            "records": [
                {"prompt": "ok", "responses": ["a", "b"]},
                {"prompt": "x", "responses": ["a", "b", "c"], "kind": "compare"},
            ]
        },
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["detail"].startswith("record:2: ")
    assert bad.json()["line"] == 2 and Prompt.objects.count() == before
    good = client.post(
        url,
        {
            "records": [
                {
                    "id": "n1",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "responses": ["a", "b"],
                }
            ]
        },
        format="json",
    )
    created = Task.objects.get(prompt__external_id="n1", project=world.project)
    assert good.status_code == 201 and good.json() == {"tasks": 1, "task_ids": [created.pk]}
    assert (
        client.post(
            url,
            {"records": [{"id": "n1", "prompt": "again", "responses": ["a", "b"]}]},
            format="json",
        ).status_code
        == 400
    )


@pytest.mark.django_db
def test_uploads_inline_and_as_a_celery_job(world, settings):
    client = client_for(world, "manager")
    url = V1 + f"projects/{world.project.pk}/imports/"
    battles = (
        "\n".join(
            json.dumps(b)
            for b in [
                {
                    "model_a": "m1",
                    "model_b": "m2",
                    "winner": "tie (bothbad)",
                    "question_id": "u1",
                    "conversation_a": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"},
                    ],
                    "conversation_b": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "b"},
                    ],
                },
            ]
        )
        + "\n"
    )
    done = client.post(
        url,
        {
            "file": SimpleUploadedFile("arena.jsonl", battles.encode()),
            "format": "arena",
            "annotator": "arena",
        },
        format="multipart",
    )
    assert done.status_code == 201, done.json()
    assert done.json()["status"] == "succeeded" and done.json()["judgment_count"] == 1
    assert Judgment.objects.get(origin="import:arena").both_bad is True
    tasks = Task.objects.count()
    broken = client.post(
        url,
        {
            "file": SimpleUploadedFile(
                "bad.jsonl", b'{"prompt": "ok", "responses": ["a", "b"]}\n{oops\n'
            ),
            "format": "prompts",
        },
        format="multipart",
    )
    assert broken.status_code == 400 and broken.json()["detail"].startswith("bad.jsonl:2: ")
    assert Task.objects.count() == tasks
    assert (
        client.post(
            url, {"file": SimpleUploadedFile("x.jsonl", b"{}"), "format": "trl"}, format="multipart"
        ).status_code
        == 400
    )  # no annotator
    settings.IMPORT_INLINE_MAX_BYTES = 1
    queued = client.post(
        url,
        {
            "file": SimpleUploadedFile("p.csv", b"prompt,response_a,response_b\nq,a,b\n"),
            "format": "prompts",
        },
        format="multipart",
    )
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    run_import_job.apply(args=(queued.json()["id"],))
    job = client.get(V1 + f"import-jobs/{queued.json()['id']}/").json()
    assert (job["status"], job["progress"], job["task_count"]) == ("succeeded", 1.0, 1)
    assert ImportJob.objects.get(pk=job["id"]).stage == "done"


@pytest.mark.django_db
def test_snapshot_create_download_and_async_build(world, settings):
    client = client_for(world, "manager")
    created = client.post(
        V1 + "snapshots/",
        {
            "project": world.project.pk,
            "kind": "preference",
            "format": "parquet",
            "filters": {"style": "text"},
        },
        format="json",
    )
    assert created.status_code == 201 and created.json()["status"] == "ready", created.json()
    download = client_for(world, "viewer").get(created.json()["download"])
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == created.json()["sha256"]
    assert download["ETag"] == f'"{created.json()["sha256"]}"'
    settings.SNAPSHOT_INLINE_MAX_JUDGMENTS = 0
    pending = client.post(
        V1 + "snapshots/", {"project": world.project.pk, "kind": "raw"}, format="json"
    )
    assert pending.status_code == 202 and pending.json()["download"] is None
    assert client.get(V1 + f"snapshots/{pending.json()['id']}/download/").status_code == 409
    build_snapshot.apply(args=(pending.json()["id"],))
    assert DatasetSnapshot.objects.get(pk=pending.json()["id"]).status == "ready"
    invalid = client.post(
        V1 + "snapshots/",
        {"project": world.project.pk, "kind": "preference", "filters": {"tie_policy": "coin"}},
        format="json",
    )
    assert invalid.status_code == 400 and "tie_policy" in invalid.json()["detail"]


@pytest.mark.django_db
def test_flagged_judgment_is_left_out_of_snapshots_that_ask(world):
    client = client_for(world, "manager")
    flagged = client.post(
        V1 + f"judgments/{world.j2.pk}/flag/", {"reason": "clicked too fast"}, format="json"
    )
    assert flagged.status_code == 200, flagged.json()
    assert flagged.json()["flagged"] and flagged.json()["flag_reason"] == "clicked too fast"
    assert client.post(V1 + f"judgments/{world.j2.pk}/flag/", {}, format="json").status_code == 400

    def judgment_ids(filters):
        created = client.post(
            V1 + "snapshots/",
            {"project": world.project.pk, "kind": "preference", "filters": filters},
            format="json",
        ).json()
        content = b"".join(client.get(created["download"]).streaming_content)
        return [json.loads(line)["judgment_ids"] for line in content.splitlines()]

    assert judgment_ids({}) == [[world.j1.pk], [world.j2.pk]]
    assert judgment_ids({"exclude_flagged": True}) == [[world.j1.pk]]
    cleared = client.post(V1 + f"judgments/{world.j2.pk}/flag/", {"flagged": False}, format="json")
    assert cleared.status_code == 200 and not cleared.json()["flagged"]
    assert judgment_ids({"exclude_flagged": True}) == [[world.j1.pk], [world.j2.pk]]


@pytest.mark.django_db
def test_streamed_export(world):
    response = client_for(world, "viewer").get(
        V1 + f"projects/{world.project.pk}/export/?kind=preference&style=text"
    )
    assert response["Content-Type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 2 and rows[0]["prompt"].startswith("\n\nHuman:")
    bad = client_for(world, "viewer").get(V1 + f"projects/{world.project.pk}/export/?kind=nope")
    assert bad.status_code == 400


@pytest.mark.django_db
def test_principle_set_versions_publish_fork_and_diff(world):
    client = client_for(world, "manager")
    created = client.post(
        V1 + "principle-sets/",
        {
            "name": "charter",
            "principles": [
                {"key": "safe", "title": "Be safe", "authority": "root"},
                {"key": "kind", "title": "Be kind"},
            ],
        },
        format="json",
    ).json()
    assert created["status"] == "draft" and [p["key"] for p in created["principles"]] == [
        "safe",
        "kind",
    ]
    pid = created["id"]
    safe = created["principles"][0]["id"]
    assert (
        client.patch(V1 + f"principles/{safe}/", {"text": "No harm."}, format="json").status_code
        == 200
    )
    assert client.post(V1 + f"principle-sets/{pid}/publish/").json()["status"] == "published"
    frozen = client.patch(V1 + f"principles/{safe}/", {"text": "x"}, format="json")
    assert frozen.status_code == 400 and "immutable" in frozen.json()["detail"]
    fork = client.post(V1 + f"principle-sets/{pid}/fork/").json()
    assert (fork["version"], fork["parent"], fork["status"]) == (2, pid, "draft")
    client.post(
        V1 + f"principle-sets/{fork['id']}/principles/",
        {"key": "honest", "title": "Be honest"},
        format="json",
    )
    kind = next(p["id"] for p in fork["principles"] if p["key"] == "kind")
    client.delete(V1 + f"principles/{kind}/")
    fork_safe = next(p["id"] for p in fork["principles"] if p["key"] == "safe")
    client.patch(V1 + f"principles/{fork_safe}/", {"authority": "platform"}, format="json")
    diff = client.get(V1 + f"principle-sets/{fork['id']}/diff/").json()
    assert diff == {
        "base": "charter@1",
        "other": "charter@2",
        "added": ["honest"],
        "removed": ["kind"],
        "changed": [{"key": "safe", "fields": {"authority": ["root", "platform"]}}],
    }
    versions = client.get(V1 + f"principle-sets/{pid}/versions/").json()
    assert [v["version"] for v in versions] == [2, 1]


@pytest.mark.django_db
def test_filtering_pagination_and_webhook_secret_shown_once(world):
    client = client_for(world, "admin")
    page = client.get(V1 + f"tasks/?project={world.project.pk}&page_size=3").json()
    assert page["count"] == 10 and len(page["results"]) == 3 and page["next"]
    mine = client.get(V1 + f"judgments/?annotator={world.users['annotator'].pk}").json()
    assert [j["id"] for j in mine["results"]] == [world.j1.pk]
    assert client.get(V1 + "judgments/?annotator_kind=model").json()["count"] == 0
    hook = client.post(
        V1 + "webhooks/",
        {"url": "https://example.org/x", "events": ["snapshot.ready", "run.finished"]},
        format="json",
    ).json()
    assert len(hook["secret"]) == 64
    assert "secret" not in client.get(V1 + f"webhooks/{hook['id']}/").json()
    assert (
        client.post(
            V1 + "webhooks/",
            {"url": "file:///etc/passwd", "events": ["run.finished"]},
            format="json",
        ).status_code
        == 400
    )


@pytest.mark.django_db
def test_openapi_schema_and_offline_docs_are_served(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert "/api/v1/assignments/{id}/submit/" in paths and "/api/v1/snapshots/" in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # offline: every script, stylesheet and icon comes from this server, none from a CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.content.decode())
    assert assets and all(url.startswith("/static/") for url in assets), assets
    assert "swagger-ui-bundle.js" in " ".join(assets)
