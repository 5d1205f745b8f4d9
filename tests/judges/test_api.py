"""Judges through the API, the staff page and a real Celery worker: every endpoint × role, bad
input answered 400 with nothing written, and a job launched over HTTP that a worker runs against
the loopback server, whose annotator then serves as the discretion report's reference."""

import json

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import PrincipleVerdict
from tests.judges.server import JudgeServer
from tests.support import start_worker, stop, wait_for
from training.judges import services, templates
from training.models import JudgeJob, JudgeTemplate

ROLES = ("admin", "manager", "annotator", "viewer", "anonymous")
STAFF = lambda ok: (ok, ok, 403, 403, 401)  # noqa: E731
TEMPLATE = {
    "name": "strict-verdict",
    "kind": "principle",
    "system": "Answer A, B or NA.",
    "user": "{prompt} | {principle} | A: {response_a} | B: {response_b}",
    "options": ["A", "B", "NA"],
}
# (name, method, path, body, expected per ROLES); {job} and {template} are filled in
MATRIX = [
    ("jobs list", "get", "judge-jobs/", None, STAFF(200)),
    ("jobs detail", "get", "judge-jobs/{job}/", None, STAFF(200)),
    ("jobs launch", "post", "judge-jobs/", "LAUNCH", STAFF(201)),
    ("jobs cancel", "post", "judge-jobs/{job}/cancel/", None, STAFF(200)),
    ("jobs resume", "post", "judge-jobs/{job}/resume/", None, STAFF(200)),
    ("jobs agreement", "get", "judge-jobs/{job}/agreement/", None, STAFF(200)),
    ("jobs revisions", "get", "judge-jobs/{job}/revisions/", None, STAFF(200)),
    ("templates list", "get", "judge-templates/", None, STAFF(200)),
    ("templates detail", "get", "judge-templates/{template}/", None, STAFF(200)),
    ("templates new version", "post", "judge-templates/", TEMPLATE, STAFF(201)),
]


@pytest.fixture
def users(make_user):
    return {role: make_user(f"{role}-1", role=role) for role in ROLES[:-1]}


@pytest.fixture
def job(pairs, project):
    job = services.launch_job(
        project=project,
        backend="http",
        config={"base_url": "http://127.0.0.1:9/v1", "model": "m"},
        enqueue=False,
    )
    JudgeJob.objects.filter(pk=job.pk).update(status="running")  # cancellable and resumable
    return job


def _client(users, role):
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(users[role])
    return client


def test_every_endpoint_by_role(users, job, project):
    template = templates.ensure_defaults()[templates.PRINCIPLE_DEFAULT]
    launch = {
        "project": project.pk,
        "backend": "http",
        "config": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
    }
    for name, method, path, body, expected in MATRIX:
        url = "/api/v1/" + path.format(job=job.pk, template=template.pk)
        got = []
        for role in ROLES:
            with transaction.atomic():
                client = _client(users, role)
                data = launch if body == "LAUNCH" else body
                response = getattr(client, method)(url, data, format="json")
                got.append(response.status_code)
                transaction.set_rollback(True)
        assert tuple(got) == expected, f"{name}: {got}"


def test_staff_page_by_role(users, job, client):
    for role, status in (("admin", 200), ("manager", 200), ("annotator", 403), ("viewer", 403)):
        client.force_login(users[role])
        response = client.get("/training/judges/")
        assert response.status_code == status, role
        response = client.get(f"/training/judges/{job.pk}/revisions/")
        assert response.status_code == status, role
    client.force_login(users["manager"])
    page = client.get("/training/judges/").content.decode()
    assert job.annotator.username in page and "Launch a judge job" in page
    client.logout()
    assert client.get("/training/judges/").status_code == 302  # to the login page


@pytest.mark.parametrize(
    "body, field",
    [
        ({"backend": "http", "config": {"model": "m"}}, "base_url"),
        ({"backend": "http", "config": {"base_url": "ftp://x/v1", "model": "m"}}, "base_url"),
        ({"backend": "http", "config": {"base_url": "http://h/v1"}}, "model"),
        (
            {
                "backend": "http",
                "config": {"base_url": "http://h/v1", "model": "m", "api_key_env": "sk-secret key"},
            },
            "api_key_env",
        ),
        (
            {
                "backend": "http",
                "config": {"base_url": "http://h/v1", "model": "m", "concurrency": 10_000},
            },
            "concurrency",
        ),
        ({"backend": "http", "config": {"base_url": "http://h/v1", "model": "m", "x": 1}}, "x"),
        ({"backend": "model", "config": {}}, "model_version"),
        (
            {"backend": "http", "principle": "harmless", "config": {"base_url": "http://h/v1"}},
            "principle",
        ),
        (
            {
                "backend": "http",
                "task_ids": [999999],
                "config": {"base_url": "http://h/v1", "model": "m"},
            },
            "task_ids",
        ),
    ],
)
def test_bad_launch_is_a_400_and_writes_nothing(admin_user, pairs, project, body, field):
    client = _client({"admin": admin_user}, "admin")
    response = client.post("/api/v1/judge-jobs/", {"project": project.pk, **body}, format="json")
    assert response.status_code == 400 and field in json.dumps(response.json())
    assert not JudgeJob.objects.exists()


def test_templates_are_versioned_by_content(users):
    client = _client(users, "admin")
    first = client.post("/api/v1/judge-templates/", TEMPLATE, format="json").json()
    same = client.post("/api/v1/judge-templates/", TEMPLATE, format="json").json()
    changed = client.post(
        "/api/v1/judge-templates/", {**TEMPLATE, "system": "Only A, B or NA."}, format="json"
    ).json()
    assert (first["version"], same["id"], changed["version"]) == (1, first["id"], 2)
    assert len(first["sha256"]) == 64 and first["sha256"] != changed["sha256"]
    broken = client.post(
        "/api/v1/judge-templates/", {**TEMPLATE, "user": "{prompt} {response_a}"}, format="json"
    )
    assert broken.status_code == 400 and "{response_b}" in broken.json()["detail"]
    assert JudgeTemplate.objects.filter(name="strict-verdict").count() == 2


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_launched_job_runs_on_a_worker_and_feeds_the_discretion_report(
    users, pairs, project, settings, capsys
):
    worker = start_worker(settings.CELERY_BROKER_URL)
    try:
        with JudgeServer() as server:
            response = _client(users, "manager").post(
                "/api/v1/judge-jobs/",
                {
                    "project": project.pk,
                    "backend": "http",
                    "config": {"base_url": server.base_url, "model": "judge-model"},
                    "annotator": "oracle-on-worker",
                },
                format="json",
            )
            assert response.status_code == 201, response.content
            job_id = response.json()["id"]
            job = wait_for(
                lambda: (
                    JudgeJob.objects.filter(pk=job_id, status__in=["succeeded", "failed"])
                    .select_related("annotator")
                    .first()
                ),
                timeout=90,
            )
    except Exception as exc:
        raise AssertionError(f"{exc}\nworker output:\n{stop(worker)}") from exc
    stop(worker)
    assert job.status == "succeeded", job.error
    assert len(server.asked) == 6 * 3 * 2
    assert PrincipleVerdict.objects.filter(judgment__annotator=job.annotator).count() == 18
    body = _client(users, "viewer").get(f"/api/v1/judge-jobs/{job_id}/")
    assert body.status_code == 403
    body = _client(users, "admin").get(f"/api/v1/judge-jobs/{job_id}/").json()
    assert body["progress"] == 1.0 and body["requests"] == 36 and body["prompt_tokens"] > 0
    call_command(
        "discretion_report", "--project", project.slug, "--reference", "oracle-on-worker", "--json"
    )
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == 6 and sum(report["categories"].values()) == 6
    # the discretion page takes the oracle as its default source when no human gave verdicts
    client = Client()
    client.force_login(users["manager"])
    page = client.get(f"/quality/{project.slug}/discretion/").content.decode()
    assert "oracle-on-worker" in page and "No principle verdicts from this source" not in page
    page = client.get("/training/judges/").content.decode()
    assert (
        f"/api/v1/judge-jobs/{job_id}/agreement/" in page and "?reference=oracle-on-worker" in page
    )


def test_staff_page_launch_form(users, pairs, project, client):
    client.force_login(users["manager"])
    bad = client.post("/training/judges/", {"project": project.pk, "backend": "http"})
    assert (
        bad.status_code == 400 and "config.base_url must be an http(s) URL" in bad.content.decode()
    )
    assert not JudgeJob.objects.exists()
    ok = client.post(
        "/training/judges/",
        {
            "project": project.pk,
            "backend": "http",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "concurrency": 4,
        },
    )
    assert ok.status_code == 302
    job = JudgeJob.objects.get()
    assert job.config["concurrency"] == 4 and job.status == "queued"
    assert job.created_by == users["manager"]
    client.post(f"/training/judges/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == "cancelled"
    client.force_login(users["viewer"])
    assert client.post(f"/training/judges/{job.pk}/resume/").status_code == 403

    client.force_login(users["manager"])
    critique = templates.ensure_defaults()[templates.CRITIQUE_DEFAULT]
    form = {"project": project.pk, "backend": "http", "template": critique.pk,
            "base_url": "http://127.0.0.1:9/v1", "model": "m"}  # fmt: skip
    bad = client.post("/training/judges/", form)
    assert bad.status_code == 400 and "needs a principle" in bad.content.decode()
    ok = client.post("/training/judges/", {**form, "principle": "honest", "max_tokens": 99})
    assert ok.status_code == 302
    job = JudgeJob.objects.latest("id")
    assert (job.principle.key, job.config["max_tokens"]) == ("honest", 99)
    page = client.get("/training/judges/").content.decode()
    assert f"/training/judges/{job.pk}/revisions/" in page
