"""Artifact storage through fsspec against a local S3-compatible server (moto): a finished run
uploads its artifact (committed by its manifest), records the s3:// URL and drops the local
copy; downloads stream from S3 with the same sha256; a later run fetches the version as its
base into a verified local cache."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile

import pytest
from django.conf import settings
from django.test import Client

from models_registry import services, storage
from models_registry.artifacts import ContentMismatch, stream_tar
from models_registry.models import ModelVersion
from tests.training.conftest import preference_rows, write_snapshot
from training import services as training_services
from training.executor import execute
from training.generation import resolve_method

moto_server = pytest.importorskip("moto.server", reason="moto[server] (dev extra)")
s3fs = pytest.importorskip("s3fs", reason="s3fs (train extra)")

PORT = 5151
BUCKET = "artifacts-test"
RUN = {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "max_length": 64,
       "save_steps": 0, "eval_fraction": 0.2}  # fmt: skip


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 for this module, with an empty bucket."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=PORT)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{PORT}", "key": "test", "secret": "test"}
    s3fs.S3FileSystem(**options).makedirs(BUCKET, exist_ok=True)  # a retried create may find it
    yield options
    server.stop()


@pytest.fixture
def s3_storage(s3_endpoint, settings, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings.ARTIFACT_STORAGE_URL = f"s3://{BUCKET}/artifacts"
    settings.ARTIFACT_STORAGE_OPTIONS = s3_endpoint
    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem(**s3_endpoint)


def _members_digest(data: bytes) -> str:
    """sha256 of the ``sha256sum`` manifest of the tar's files (paths under its top folder)."""
    lines = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            content = tar.extractfile(member).read()
            rel = member.name.split("/", 1)[1]
            lines.append(f"{hashlib.sha256(content).hexdigest()}  {rel}\n")
    return hashlib.sha256(
        "".join(sorted(lines, key=lambda line: line.split("  ", 1)[1])).encode()
    ).hexdigest()


@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_s3_round_trip(s3_storage, project, make_user, isolated_artifacts):
    snapshot = write_snapshot(project, "preference", preference_rows(24))
    run = training_services.launch_run(kind="reward", snapshot=snapshot, config=RUN)
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error or run.log_tail[-3000:]
    assert run.metrics.filter(name="loss").exists()
    version = run.output_model_version
    assert version.artifact_uri.startswith(f"s3://{BUCKET}/artifacts/runs/{run.pk}-")
    key = version.artifact_uri.removeprefix("s3://")
    assert s3_storage.exists(key + storage.MANIFEST_SUFFIX)  # committed
    assert s3_storage.exists(f"{key}/config.json")
    manifest = s3_storage.cat_file(key + storage.MANIFEST_SUFFIX).decode()
    assert hashlib.sha256(manifest.encode()).hexdigest() == version.sha256
    assert not training_services.run_dirs(run)[0].exists()  # moved into the cache:
    cached = isolated_artifacts / "cache" / version.sha256
    assert services.artifact_digest(cached / "model")[0] == version.sha256
    shutil.rmtree(cached)  # from here on, as on another machine: nothing cached

    manager = make_user("s3-manager", role="manager")
    web = Client()
    web.force_login(manager)
    api = web.get(
        "/api/v1/registry/model-versions/get-download-uri",
        {"name": version.registered_model.name, "version": version.version},
    ).json()
    assert api["artifact_uri"] == version.artifact_uri and api["download_url"]
    for url in (api["download_url"], f"/registry/versions/{version.pk}/artifact/"):
        response = web.get(url)
        assert response.status_code == 200
        assert response["X-Artifact-SHA256"] == version.sha256
        data = b"".join(response.streaming_content)
        assert _members_digest(data) == version.sha256

    second = training_services.launch_run(
        kind="reward", snapshot=snapshot, config=RUN, base_model_version=version, name="rm-2"
    )
    execute(second.pk)
    second.refresh_from_db()
    assert second.status == "succeeded", second.error or second.log_tail[-3000:]
    assert services.artifact_digest(cached / "model")[0] == version.sha256  # fetched, checked
    child = second.output_model_version
    assert child.artifact_uri.startswith(f"s3://{BUCKET}/")
    assert [(p.role, p.parent_id) for p in child.parent_links.all()] == [("base", version.pk)]

    shutil.rmtree(cached)  # profiling (a worker job) fetches the version the same way
    label, scorer = resolve_method(ModelVersion.objects.get(pk=version.pk))
    assert label == "reward-model"
    assert len(scorer(["Can you help?"], ["Sure, safely."])) == 1
    assert services.artifact_digest(cached / "model")[0] == version.sha256


@pytest.mark.django_db
def test_uncommitted_upload_is_invisible_and_tampering_is_refused(s3_storage, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "weights.bin").write_bytes(b"\x01" * 5000)
    uri, sha256, size = storage.publish(folder, "manual/1")
    assert (sha256, size) == (
        services.artifact_digest(folder)[0],
        5000 + len('{"model_type": "gpt2"}'),
    )
    assert storage.in_store(uri) and services.artifact_location(uri) == uri
    assert not storage.in_store("s3://elsewhere/model")  # never read outside the store

    key = uri.removeprefix("s3://")
    half = f"{BUCKET}/artifacts/manual/2-crashed/model"
    s3_storage.pipe(f"{half}/config.json", b"{}")  # files but no manifest: a crash mid-upload
    with pytest.raises(services.DomainError, match="not a committed artifact"):
        storage.local_copy(f"s3://{half}", "0" * 64)
    with pytest.raises(services.DomainError, match="does not match sha256"):
        storage.remote_entries(uri, "f" * 64)

    entries = storage.remote_entries(uri, sha256)
    assert _members_digest(b"".join(stream_tar(entries))) == sha256
    s3_storage.pipe(f"{key}/weights.bin", b"\x02" * 5000)  # the object changed after commit
    streamed = stream_tar(storage.remote_entries(uri, sha256))
    with pytest.raises(ContentMismatch, match=r"model/weights\.bin"):
        b"".join(streamed)  # cut short: never a complete archive with altered bytes
    with pytest.raises(services.DomainError, match=r"weights\.bin does not match"):
        storage.local_copy(uri, sha256)
    cache = settings.ARTIFACT_ROOT / "cache"
    assert not any(sha256 in p.name for p in (cache.iterdir() if cache.exists() else ()))
    assert ModelVersion.objects.count() == 0


def test_system_check_names_a_store_fsspec_cannot_open(settings):
    from models_registry.checks import artifact_storage_is_usable

    settings.ARTIFACT_STORAGE_URL = "s3://bucket/artifacts"
    assert artifact_storage_is_usable(None) == []
    settings.ARTIFACT_STORAGE_URL = "nosuchfs://bucket/artifacts"
    (error,) = artifact_storage_is_usable(None)
    assert error.id == "models_registry.E001" and "nosuchfs://" in error.msg
