"""Jobs a person waits on are never left queued in silence when the broker is down: an import
and a snapshot asked for while it is unreachable answer 503 quickly and are recorded as failed
with the reason (runs and generation jobs: test_launch.py, test_jobs_training.py)."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotation.models import DatasetSnapshot, ImportJob, Task

V1 = "/api/v1/"


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.mark.django_db(transaction=True)
def test_an_import_asked_while_the_broker_is_down_fails_clearly(
    api, project, settings, tmp_path, broker_down
):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_INLINE_MAX_BYTES = 0  # a worker's job
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "Hi?", "responses": ["a", "b"]}\n')
    started = time.monotonic()
    response = api.post(
        V1 + f"projects/{project.pk}/imports/",
        {"file": upload, "format": "prompts"},
        format="multipart",
    )
    assert time.monotonic() - started < 10
    assert response.status_code == 503, response.content[:500]
    assert "broker is unreachable" in response.json()["detail"]
    job = ImportJob.objects.get()
    assert job.status == "failed" and "broker is unreachable" in job.error
    assert job.finished_at is not None and not Task.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_asked_while_the_broker_is_down_fails_clearly(api, project, broker_down):
    started = time.monotonic()
    response = api.post(
        V1 + "snapshots/",
        {"project": project.pk, "kind": "preference", "run": "async"},
        format="json",
    )
    assert time.monotonic() - started < 10
    assert response.status_code == 503, response.content[:500]
    assert "broker is unreachable" in response.json()["detail"]
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.status == "failed" and "broker is unreachable" in snapshot.error
