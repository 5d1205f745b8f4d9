"""Issue 17, background jobs never stuck: a training run or a generation job that meets any
exception ends ``failed`` with a readable first line (type and message) then the traceback, and
leaves no partial files behind; each through the real code path the Celery task runs
(``training.executor.execute``, ``training.generation.execute_generation``) with a crafted
failing input. Also: a generation job asked for while the broker is down fails clearly."""

from __future__ import annotations

import json
import os

import pytest
from celery import current_app

from annotation.models import DatasetSnapshot, Response, Task
from common.background import QueueUnavailable
from models_registry import services as registry_services
from models_registry.models import GenerationJob, ModelVersion, RegisteredModel
from training import services
from training.executor import execute
from training.generation import execute_generation

FAST = {"max_steps": 2, "batch_size": 2, "max_length": 32, "save_steps": 0, "eval_fraction": 0}


def _snapshot(project, settings, content: bytes | None) -> DatasetSnapshot:
    snap = DatasetSnapshot.objects.create(
        project=project, principle_set=project.principle_set, kind="preference", status="ready"
    )
    path = settings.ARTIFACT_ROOT / "snapshots" / f"{snap.pk}.jsonl"
    if content is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    DatasetSnapshot.objects.filter(pk=snap.pk).update(artifact_path=str(path), row_count=4)
    snap.refresh_from_db()
    return snap


def _broken_model(directory) -> str:
    """A model directory whose files are not a model (a half-copied or corrupted artifact)."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "gpt2", "n_embd": ')
    (directory / "model.safetensors").write_bytes(os.urandom(256))
    return str(directory)


def _assert_failed_readably(error: str, first_line: str) -> None:
    head, _, rest = error.partition("\n\n")
    assert head.startswith(first_line), error[:500]
    assert "Traceback (most recent call last)" in rest, error[:500]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "first_line"),
    [
        (os.urandom(4096), "UnicodeDecodeError: "),  # random bytes named .jsonl
        (b'{"prompt": "Hi", "chosen": "a", "rejected": "b"}\n{"prompt": [[[', "JSONDecodeError: "),
        (b'{"prompt": "Hi", "chosen": "a"}\n', "KeyError: "),  # a row without "rejected"
        (None, "FileNotFoundError: "),  # the snapshot's file is gone
    ],
)
def test_run_on_a_corrupted_or_missing_snapshot_fails_readably(
    project, settings, content, first_line
):
    run = services.launch_run(kind="reward", snapshot=_snapshot(project, settings, content))
    execute(run.pk)  # what the Celery task runs
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None
    _assert_failed_readably(run.error, first_line)
    assert not services.run_root(run).exists()


@pytest.mark.django_db
def test_multi_process_run_on_a_broken_base_model_fails_and_leaves_no_files(
    project, settings, tmp_path, monkeypatch
):
    """torchrun's ranks die loading a corrupted base model: the run is failed with their output
    and nothing it wrote (launch spec, a copy of the training data, logs, checkpoints) stays."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings.MODEL_ROOTS = [tmp_path / "models"]
    rows = [{"prompt": f"Q{i}?", "chosen": "Kind answer.", "rejected": "Rude."} for i in range(8)]
    snapshot = _snapshot(project, settings, "".join(json.dumps(r) + "\n" for r in rows).encode())
    run = services.launch_run(
        kind="reward",
        snapshot=snapshot,
        config=FAST,
        base_model=_broken_model(tmp_path / "models" / "broken"),
        num_processes=2,
    )
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == "failed", run.log_tail[-2000:]
    _assert_failed_readably(run.error, "RuntimeError: OSError: ")
    assert "broken" in run.error  # the ranks' own error reached the run
    assert not services.run_root(run).exists(), list(services.run_root(run).rglob("*"))
    assert run.output_model_version is None


@pytest.fixture
def broken_policy(tmp_path) -> ModelVersion:
    model = RegisteredModel.objects.create(name="broken-policy", kind="sft")
    return ModelVersion.objects.create(
        registered_model=model, version=1, artifact_uri=_broken_model(tmp_path / "policy")
    )


@pytest.mark.django_db
def test_generation_with_a_broken_policy_artifact_fails_readably(
    project, compare_tasks, broken_policy
):
    tasks, responses = Task.objects.count(), Response.objects.count()
    job = registry_services.request_generation(
        project=project, versions=[broken_policy], samples_per_model=2, max_prompts=3
    )
    execute_generation(job.pk)  # what the Celery task runs
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    first = job.error.splitlines()[0]
    assert not first.startswith("Traceback") and ":" in first, job.error[:500]
    assert "Traceback (most recent call last)" in job.error
    assert (Task.objects.count(), Response.objects.count()) == (tasks, responses)
    assert job.task_ids == []


@pytest.mark.django_db(transaction=True)
def test_generation_asked_while_the_broker_is_down_is_failed_not_left_queued(
    project, compare_tasks, broken_policy, settings
):
    app = current_app
    before = app.conf.broker_url

    def use(url: str) -> None:
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    use("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(QueueUnavailable, match="broker is unreachable"):
            registry_services.request_generation(
                project=project, versions=[broken_policy], samples_per_model=2
            )
    finally:
        use(before)
    job = GenerationJob.objects.get()
    assert job.status == "failed" and "broker is unreachable" in job.error


@pytest.mark.django_db
def test_failed_run_error_is_storable_whatever_the_exception_says(project, settings):
    """A message with NUL bytes (PostgreSQL refuses them in text) still fails the run."""
    run = services.launch_run(kind="reward", snapshot=_snapshot(project, settings, b"{}\n"))
    services.claim_run(run_id=run.pk, worker="test:1")
    services.fail_run(run_id=run.pk, error="ValueError: bad\x00byte", log_tail="tail\x00")
    run.refresh_from_db()
    assert run.status == "failed" and "\x00" not in run.error + run.log_tail
