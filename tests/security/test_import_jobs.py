"""Issue 17, import jobs never stuck: any exception while importing marks the job failed with
a readable message (an unexpected one keeps its traceback for staff) and removes the uploaded
file; the request answers 400, never 500. One crafted file per failure, imported in the
request and by the worker's task body."""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import tasks
from annotation.models import ImportJob, Task
from config.celery import app as celery_app

V1 = "/api/v1/"
GOOD = b'{"prompt": "q", "responses": ["a", "b"]}\n'
DEEP = 100_000


def deep_cell_csv() -> bytes:
    cell = "[" * 60_000 + "]" * 60_000  # within the csv module's 131,072-character field limit
    return f'prompt,messages,response_a,response_b\nq,"{cell}",a,b\n'.encode()


# name, content, import format, what the job's error says, whether it was unexpected
CRAFTED = [
    ("random.jsonl.gz", random.Random(17).randbytes(4096), "prompts", "not a valid gzip file",
     False),
    ("truncated.jsonl.gz", gzip.compress(GOOD * 2000)[:300], "prompts", "not a valid gzip file",
     False),
    ("deep.json", b"[" * DEEP + b"]" * DEEP, "prompts", "JSON_MAX_DEPTH", False),
    ("deep.jsonl", b'{"prompt": "q", "metadata": ' + b"[" * DEEP + b"]" * DEEP + b"}\n",
     "prompts", "JSON_MAX_DEPTH", False),
    ("deep-cell.csv", deep_cell_csv(), "prompts", "nested too deeply", False),
    ("latin1.csv", "prompt,response_a,response_b\ncafé,a,b\n".encode("latin-1"), "prompts",
     "not UTF-8", False),
    ("invalid.json", b'[{"prompt": "caf\xe9", "responses": ["a", "b"]}]', "prompts",
     "not UTF-8", False),
    ("utf16.jsonl", GOOD.decode().encode("utf-16"), "prompts", "not UTF-8", False),
    ("kind.jsonl", b'{"prompt": "q", "responses": ["a", "b"], "kind": ["x"]}\n', "prompts",
     "unknown task kind", False),
    ("winner.jsonl", b'{"model_a": "m", "model_b": "n", "winner": []}\n', "arena", "'winner'",
     False),
    # Valid JSON that Python decodes into a string no database stores as UTF-8: an unexpected
    # error (not one the importers name), failed all the same, its traceback kept.
    ("surrogate.json", b'[{"prompt": "q", "responses": ["half a pair \\ud800", "b"]}]',
     "prompts", "cannot be stored as UTF-8", True),
]  # fmt: skip
IDS = [case[0] for case in CRAFTED]


@pytest.fixture(autouse=True)
def _roots(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    return client


def post(api: APIClient, project, name: str, content: bytes, fmt: str):
    data = {"file": SimpleUploadedFile(name, content), "format": fmt}
    if fmt != "prompts":
        data["annotator"] = "crafted"
    return api.post(V1 + f"projects/{project.pk}/imports/", data, format="multipart")


def assert_failed_cleanly(job: ImportJob, name: str, says: str, unexpected: bool, settings):
    assert (job.status, job.stage) == ("failed", "failed") and job.finished_at is not None
    assert job.error.startswith(f"{name}") and says in job.error, job.error
    assert str(settings.MEDIA_ROOT) not in job.error  # the original name, not the server path
    assert ("Traceback" in job.traceback) is unexpected
    assert not Task.objects.exists()
    assert not (Path(settings.MEDIA_ROOT) / job.file_path).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "content", "fmt", "says", "unexpected"), CRAFTED, ids=IDS)
def test_a_crafted_file_imported_in_the_request_is_a_400_and_a_failed_job(
    api, project, settings, name, content, fmt, says, unexpected
):
    response = post(api, project, name, content, fmt)
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert says in body["detail"] and body["job"]["status"] == "failed"
    assert ("Traceback" in body["job"]["traceback"]) is unexpected  # staff see it
    assert_failed_cleanly(ImportJob.objects.get(), name, says, unexpected, settings)


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "content", "fmt", "says", "unexpected"), CRAFTED, ids=IDS)
def test_a_crafted_file_imported_by_the_worker_fails_its_job(
    api, project, settings, django_capture_on_commit_callbacks, name, content, fmt, says,
    unexpected,
):  # fmt: skip
    settings.IMPORT_INLINE_MAX_BYTES = 0
    with (
        mock.patch.object(celery_app, "send_task") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post(api, project, name, content, fmt)
    assert response.status_code == 202
    job_id = response.json()["id"]
    send.assert_called_once_with("annotation.run_import_job", args=(job_id,))
    assert tasks.run_import_job(job_id)["status"] == "failed"  # the Celery task's body
    assert_failed_cleanly(ImportJob.objects.get(pk=job_id), name, says, unexpected, settings)
    job = api.get(V1 + f"import-jobs/{job_id}/").json()
    assert job["status"] == "failed" and says in job["error"]


@pytest.mark.django_db
@pytest.mark.parametrize("case", [CRAFTED[0], CRAFTED[-1]], ids=[IDS[0], IDS[-1]])
def test_the_import_page_shows_the_failed_job(client, admin_user, project, settings, case):
    name, content, fmt, says, unexpected = case
    client.force_login(admin_user)
    response = client.post(
        reverse("import-upload", args=[project.slug]),
        {"file": SimpleUploadedFile(name, content), "format": fmt},
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    page = client.get(reverse("import-job", args=[job.pk])).content.decode()
    assert 'data-testid="import-status">failed<' in page and says in page
    assert ('data-testid="import-traceback"' in page) is unexpected
    assert_failed_cleanly(job, name, says, unexpected, settings)
