"""Issue 17, uploads and request limits: an upload cap enforced while the body streams in, caps
on what a compressed import decompresses to (the inline limit measured on decompressed bytes),
JSON nesting depth on API bodies and imported files, request bodies sized to the bulk import's
10,000 records, every API error as JSON naming the limit, and the bulk import's task ids."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import tasks
from annotation.datasets.importers import jobs
from annotation.errors import UploadTooLargeError
from annotation.models import ImportJob, Prompt, Task
from common.limits import UploadCapHandler, UploadTooLarge, too_deep, value_depth
from config.celery import app as celery_app

V1 = "/api/v1/"
TEXT = 1500  # characters per prompt and per response in the integrator's batches


@pytest.fixture(autouse=True)
def _roots(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    return client


def stored_uploads(settings) -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "imports"
    return sorted(folder.iterdir()) if folder.exists() else []


def batch(count: int, prefix: str = "r") -> list[dict]:
    """``count`` records of 1,500-character texts (a prompt and two responses each)."""
    return [
        {
            "id": f"{prefix}{i}",
            "prompt": f"{i:06d}".ljust(TEXT, "p"),
            "responses": [f"{i:06d}".ljust(TEXT, "a"), f"{i:06d}".ljust(TEXT, "b")],
        }
        for i in range(count)
    ]


def assert_ids_follow_records(body: dict, records: list[dict]) -> None:
    assert body["tasks"] == len(records) == len(body["task_ids"])
    external = dict(
        Task.objects.filter(pk__in=body["task_ids"]).values_list("pk", "prompt__external_id")
    )
    assert [external[pk] for pk in body["task_ids"]] == [r["id"] for r in records]


# ---- request bodies: sized to the serializers, refused as JSON naming the limit


@pytest.mark.django_db
def test_bulk_import_returns_the_task_ids_in_the_records_order(api, project):
    """Runs on SQLite and on PostgreSQL (the COPY path): ids match the records one to one."""
    records = batch(25)
    response = api.post(V1 + f"projects/{project.pk}/prompts/", {"records": records}, "json")
    assert response.status_code == 201, response.content
    assert_ids_follow_records(response.json(), records)
    again = batch(3, prefix="s")
    second = api.post(V1 + f"projects/{project.pk}/prompts/", {"records": again}, "json")
    assert_ids_follow_records(second.json(), again)
    assert min(second.json()["task_ids"]) > max(response.json()["task_ids"])


@pytest.mark.django_db
def test_a_1000_record_batch_over_djangos_default_body_limit_is_accepted(api, project):
    """~4.6 MB of JSON: Django's default 2.5 MiB limit answered 400 with an HTML page."""
    records = batch(1000)
    response = api.post(V1 + f"projects/{project.pk}/prompts/", {"records": records}, "json")
    assert response.status_code == 201, response.content[:300]
    assert_ids_follow_records(response.json(), records)


@pytest.mark.django_db
def test_the_largest_batch_the_serializer_allows_fits_the_body_limit(api, project, settings):
    """10,000 records (the serializer's maximum) of 1,500-character texts, ~46 MB."""
    records = batch(10_000)
    body = json.dumps({"records": records}).encode()
    assert 40 * 1024**2 < len(body) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = api.post(
        V1 + f"projects/{project.pk}/prompts/", body, content_type="application/json"
    )
    assert response.status_code == 201, response.content[:300]
    assert_ids_follow_records(response.json(), records)
    assert Prompt.objects.filter(project=project).count() == 10_000


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_json_413_naming_the_setting(api, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50_000
    response = api.post(V1 + f"projects/{project.pk}/prompts/", {"records": batch(20)}, "json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["limit"] == "DATA_UPLOAD_MAX_MEMORY_SIZE" and body["max"] == 50_000
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["detail"]
    assert not Task.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_api_errors_outside_drf_are_json(api):
    response = api.get(V1 + "no-such-endpoint/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not Found"}


# ---- JSON depth


def test_depth_is_measured_without_recursing():
    assert value_depth({"a": [1, {"b": []}]}, stop_above=64) == 4
    assert value_depth("scalar", stop_above=64) == 0
    deep = b"[" * 200_000 + b"]" * 200_000
    assert "JSON_MAX_DEPTH" in too_deep(deep, limit=64)
    brackets_in_strings = b'["[[[[[[[[", {"k": [[[["x"]]]]}]'  # 6 levels
    assert too_deep(brackets_in_strings, limit=6) is None
    assert "JSON_MAX_DEPTH" in too_deep(brackets_in_strings, limit=5)


@pytest.mark.django_db
def test_a_50k_deep_body_to_the_token_endpoint_is_a_400_naming_the_limit(client):
    deep = b"[" * 50_000 + b"]" * 50_000
    response = client.post(V1 + "auth/token/", deep, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "JSON_MAX_DEPTH" in response.json()["detail"]


@pytest.mark.django_db
def test_json_bodies_up_to_the_depth_limit_parse(client, settings):
    def body(depth: int) -> bytes:
        return b'{"username": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b', "password": "x"}'

    within = client.post(V1 + "auth/token/", body(64), content_type="application/json")
    assert within.status_code == 400 and "JSON_MAX_DEPTH" not in json.dumps(within.json())
    beyond = client.post(V1 + "auth/token/", body(65), content_type="application/json")
    assert beyond.status_code == 400 and "JSON_MAX_DEPTH" in beyond.json()["detail"]


@pytest.mark.django_db
def test_a_lone_surrogate_in_a_bulk_import_is_a_400(api, project):
    body = b'{"records": [{"prompt": "half a pair \\ud800", "responses": ["a", "b"]}]}'
    response = api.post(
        V1 + f"projects/{project.pk}/prompts/", body, content_type="application/json"
    )
    assert response.status_code == 400 and "surrogate" in response.json()["detail"]
    assert response["Content-Type"] == "application/json"
    assert not Task.objects.filter(project=project).exists()


# ---- the upload cap


@pytest.mark.django_db
def test_an_upload_over_the_cap_is_a_json_413_and_nothing_is_stored(api, project, settings):
    settings.UPLOAD_MAX_BYTES = 4096
    response = api.post(
        V1 + f"projects/{project.pk}/imports/",
        {"file": SimpleUploadedFile("big.jsonl", b" " * 10_000), "format": "prompts"},
        format="multipart",
    )
    assert response.status_code == 413
    assert response.json()["limit"] == "UPLOAD_MAX_BYTES" and response.json()["max"] == 4096
    assert not ImportJob.objects.exists() and stored_uploads(settings) == []


@pytest.mark.django_db
def test_the_import_page_refuses_an_upload_over_the_cap_naming_it(client, admin_user, project,
                                                                   settings):  # fmt: skip
    settings.UPLOAD_MAX_BYTES = 4096
    client.force_login(admin_user)
    response = client.post(
        reverse("import-upload", args=[project.slug]),
        {"file": SimpleUploadedFile("big.jsonl", b" " * 10_000), "format": "prompts"},
    )
    assert response.status_code == 413 and b"UPLOAD_MAX_BYTES" in response.content
    assert not ImportJob.objects.exists() and stored_uploads(settings) == []


def test_the_upload_handler_stops_a_file_as_it_streams_past_the_cap(settings):
    settings.UPLOAD_MAX_BYTES = 1000
    request = RequestFactory().post("/api/v1/x/")
    handler = UploadCapHandler(request)
    handler.handle_raw_input(None, request.META, 0, b"boundary")  # length unknown: streams
    assert handler.receive_data_chunk(b"x" * 600, 0) == b"x" * 600
    with pytest.raises(UploadTooLarge, match="UPLOAD_MAX_BYTES"):
        handler.receive_data_chunk(b"x" * 600, 600)
    assert isinstance(request.limit_error, UploadTooLarge)


@pytest.mark.django_db
def test_the_import_service_refuses_a_file_over_the_cap_leaving_nothing(project, settings):
    settings.UPLOAD_MAX_BYTES = 100
    upload = SimpleUploadedFile("big.jsonl", b"{}\n" * 100)
    with pytest.raises(UploadTooLargeError, match="UPLOAD_MAX_BYTES"):
        jobs.create_import_job(project=project, upload=upload, fmt="prompts")
    assert not ImportJob.objects.exists() and stored_uploads(settings) == []


# ---- decompression bombs


def gzip_bomb(lines: int) -> bytes:
    """``lines`` identical, valid prompt records gzipped: a few hundred KB for hundreds of MB."""
    line = json.dumps({"prompt": "p" * TEXT, "responses": ["a" * TEXT, "b" * TEXT]}) + "\n"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    chunk = line.encode() * 1000
    parts = [compressor.compress(chunk) for _ in range(lines // 1000)]
    return b"".join([*parts, compressor.flush()])


@pytest.fixture
def queued_sends():
    with mock.patch.object(celery_app, "send_task") as send:
        yield send


@pytest.mark.django_db
def test_a_gzip_bomb_is_not_imported_inline_and_its_job_fails_naming_the_ratio(
    api, project, settings, queued_sends, django_capture_on_commit_callbacks
):
    bomb = gzip_bomb(45_000)  # ~205 MB of records
    assert len(bomb) < settings.IMPORT_INLINE_MAX_BYTES  # small as uploaded
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            V1 + f"projects/{project.pk}/imports/",
            {"file": SimpleUploadedFile("bomb.jsonl.gz", bomb), "format": "prompts"},
            format="multipart",
        )
    assert response.status_code == 202, response.content[:300]  # measured decompressed
    job_id = response.json()["id"]
    queued_sends.assert_called_once_with("annotation.run_import_job", args=(job_id,))
    tracemalloc.start()
    try:
        result = tasks.run_import_job(job_id)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    job = ImportJob.objects.get(pk=job_id)
    assert result["status"] == job.status == "failed" and job.stage == "failed"
    assert job.error.startswith("bomb.jsonl.gz: decompresses to more than 100 times its size")
    assert "IMPORT_MAX_COMPRESSION_RATIO" in job.error
    assert peak < 120 * 1024**2, peak  # refused at 16 MiB decompressed, not after 205 MB
    assert not Task.objects.filter(project=project).exists() and stored_uploads(settings) == []


@pytest.mark.django_db
def test_decompression_stops_at_the_size_cap_naming_it(api, project, settings):
    settings.IMPORT_MAX_DECOMPRESSED_BYTES = 100_000
    settings.IMPORT_INLINE_MAX_BYTES = 10 * 1024**2
    content = gzip.compress(b"".join(
        json.dumps({"prompt": f"q{i}", "responses": ["a", "b"]}).encode() + b"\n"
        for i in range(10_000)
    ))  # fmt: skip
    response = api.post(
        V1 + f"projects/{project.pk}/imports/",
        {"file": SimpleUploadedFile("many.jsonl.gz", content), "format": "prompts"},
        format="multipart",
    )
    assert response.status_code == 400
    assert "IMPORT_MAX_DECOMPRESSED_BYTES" in response.json()["detail"]
    assert not Task.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_a_parquet_file_over_the_decompressed_cap_is_refused(api, project, settings, tmp_path):
    settings.IMPORT_MAX_DECOMPRESSED_BYTES = 1024**2
    settings.IMPORT_INLINE_MAX_BYTES = 10 * 1024**2
    path = tmp_path / "big.parquet"
    rows = 2000
    table = pa.table({
        "prompt": [f"q{i}" + "p" * TEXT for i in range(rows)],
        "response_a": ["a" * TEXT] * rows,
        "response_b": ["b" * TEXT] * rows,
    })  # fmt: skip
    pq.write_table(table, path, compression="zstd", use_dictionary=False)
    response = api.post(
        V1 + f"projects/{project.pk}/imports/",
        {"file": SimpleUploadedFile("big.parquet", path.read_bytes()), "format": "prompts"},
        format="multipart",
    )
    assert response.status_code == 400
    assert "IMPORT_MAX_DECOMPRESSED_BYTES" in response.json()["detail"]
    assert not Task.objects.filter(project=project).exists()
