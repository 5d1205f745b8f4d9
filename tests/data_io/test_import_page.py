"""The import pages: staff upload a file, the job runs (inline or by Celery) and its page shows
status, a progress bar and counts, polling with htmx until done; a malformed file fails naming
``file:line`` with nothing written."""

import json
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import tasks
from annotation.models import ImportJob, Judgment, Prompt, Task
from config.celery import app as celery_app

GOOD = {"prompt": "fine", "responses": ["a", "b"]}
HTMX = {"HTTP_HX_REQUEST": "true"}


def jsonl(*records) -> bytes:
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n").encode()


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


@pytest.fixture
def staff_client(client, make_user):
    client.force_login(make_user("import-manager", role="manager"))
    return client


@pytest.fixture
def queued(settings):
    """Every upload goes to Celery (the inline limit is 0); the queued task is recorded, not
    sent."""
    settings.IMPORT_INLINE_MAX_BYTES = 0
    with mock.patch.object(celery_app, "send_task") as send:
        yield send


def post_upload(client, project, capture, **data):
    with capture(execute=True):
        return client.post(reverse("import-upload", args=[project.slug]), data)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["annotator", "viewer"])
def test_annotators_and_viewers_are_refused(client, make_user, project, role):
    client.force_login(make_user(f"u-{role}", role=role))
    job = ImportJob.objects.create(project=project, format="prompts", file_path="imports/x")
    assert client.get(reverse("import-upload", args=[project.slug])).status_code == 403
    response = client.post(
        reverse("import-upload", args=[project.slug]),
        {"file": upload("p.jsonl", jsonl(GOOD)), "format": "prompts"},
    )
    assert response.status_code == 403 and not Task.objects.exists()
    assert client.get(reverse("import-job", args=[job.pk])).status_code == 403


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client, project):
    for url in (reverse("import-upload", args=[project.slug]), reverse("import-job", args=[1])):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.django_db
def test_form_offers_the_api_formats_and_home_links_it(client, admin_user, project):
    client.force_login(admin_user)
    page = client.get(reverse("import-upload", args=[project.slug])).content.decode()
    for fmt in ("prompts", "trl", "hh-rlhf", "arena", "label-studio"):
        assert f'value="{fmt}"' in page
    for name in ("annotator", "annotator_kind", "model_ref", "file_format", "ls_keys"):
        assert f'name="{name}"' in page
    assert 'enctype="multipart/form-data"' in page
    home = client.get(reverse("home")).content.decode()
    assert reverse("import-upload", args=[project.slug]) in home


@pytest.mark.django_db
def test_valid_upload_is_queued_then_succeeds_at_100_percent(
    staff_client, project, queued, django_capture_on_commit_callbacks
):
    response = post_upload(
        staff_client, project, django_capture_on_commit_callbacks,
        file=upload("prompts.jsonl", jsonl(GOOD, GOOD, {"prompt": "r", "responses": list("xyz")})),
        format="prompts",
    )  # fmt: skip
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    queued.assert_called_once_with(
        "annotation.run_import_job", args=(job.pk,), retry=True, retry_policy=mock.ANY
    )
    assert job.status == "queued" and not Task.objects.exists()

    page = staff_client.get(reverse("import-job", args=[job.pk]), **HTMX).content.decode()
    assert "<html" not in page and 'hx-trigger="every 2s"' in page and "queued" in page

    assert tasks.run_import_job(job.pk)["status"] == "succeeded"  # the Celery task body
    assert Task.objects.count() == 3 and Prompt.objects.count() == 3
    page = staff_client.get(reverse("import-job", args=[job.pk])).content.decode()
    assert "<html" in page and "succeeded" in page
    assert '<progress max="1" value="1.0"' in page and "100%" in page
    assert 'data-testid="import-tasks">3<' in page
    partial = staff_client.get(reverse("import-job", args=[job.pk]), **HTMX).content.decode()
    assert "<html" not in partial and "hx-get" not in partial and "every 2s" not in partial


@pytest.mark.django_db
def test_preference_upload_names_the_annotator(
    staff_client, project, queued, django_capture_on_commit_callbacks
):
    rows = [{"prompt": f"Q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(2)]
    post_upload(
        staff_client, project, django_capture_on_commit_callbacks,
        file=upload("prefs.jsonl", jsonl(*rows)), format="trl", annotator="labeller-a",
        annotator_kind="human",
    )  # fmt: skip
    job = ImportJob.objects.get()
    assert job.options["annotator"] == "labeller-a"
    tasks.run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.judgment_count == 2 and Judgment.objects.count() == 2


@pytest.mark.django_db
def test_preference_upload_without_annotator_is_refused_with_the_form(
    staff_client, project, queued
):
    response = staff_client.post(
        reverse("import-upload", args=[project.slug]),
        {"file": upload("prefs.jsonl", jsonl(GOOD)), "format": "trl"},
    )
    assert response.status_code == 200 and "named" in response.content.decode()
    assert not ImportJob.objects.exists()
    queued.assert_not_called()


@pytest.mark.django_db
def test_malformed_file_fails_naming_the_line_and_writes_nothing(
    staff_client, project, queued, django_capture_on_commit_callbacks
):
    post_upload(
        staff_client, project, django_capture_on_commit_callbacks,
        file=upload("broken.jsonl", jsonl(GOOD, GOOD, GOOD, "{nope", GOOD)), format="prompts",
    )  # fmt: skip
    job = ImportJob.objects.get()
    tasks.run_import_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "broken.jsonl:4" in job.error
    assert not (Task.objects.exists() or Prompt.objects.exists() or Judgment.objects.exists())
    page = staff_client.get(reverse("import-job", args=[job.pk])).content.decode()
    assert "failed" in page and "broken.jsonl:4" in page and "nothing was written" in page
    partial = staff_client.get(reverse("import-job", args=[job.pk]), **HTMX).content.decode()
    assert "<html" not in partial and "every 2s" not in partial and "broken.jsonl:4" in partial


@pytest.mark.django_db
def test_running_job_polls_and_shows_its_progress(staff_client, project):
    job = ImportJob.objects.create(
        project=project, format="prompts", file_path="imports/x", status="running",
        stage="validating", progress=0.25,
    )  # fmt: skip
    partial = staff_client.get(reverse("import-job", args=[job.pk]), **HTMX).content.decode()
    assert "<html" not in partial and 'hx-swap="outerHTML"' in partial
    assert f'hx-get="/imports/{job.pk}/"' in partial and "25%" in partial


@pytest.mark.django_db
def test_small_upload_is_imported_in_the_request(staff_client, project):
    response = staff_client.post(
        reverse("import-upload", args=[project.slug]),
        {"file": upload("p.jsonl", jsonl(GOOD)), "format": "prompts"},
        follow=True,
    )
    assert "succeeded" in response.content.decode() and Task.objects.count() == 1
