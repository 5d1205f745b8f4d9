"""Training runs through a real Celery worker: every kind end to end, cancel, crash, resume."""

from pathlib import Path

import pytest
from django.conf import settings

from common.errors import DomainError
from models_registry.models import ModelParent
from tests.support import finished_run, kill_tree, start_worker, stop, wait_for
from training import services
from training.models import RunMetric, TrainingRun

pytestmark = [pytest.mark.worker, pytest.mark.training, pytest.mark.django_db(transaction=True)]

# The worker consumes the broker this test process publishes to: the embedded SQLite broker on
# the default runtime, Redis when CELERY_BROKER_URL names it (the second CI pass).
BROKER_URL = settings.CELERY_BROKER_URL
FAST = {"max_steps": 6, "batch_size": 8, "learning_rate": 1e-3, "max_length": 64,
        "save_steps": 0, "eval_fraction": 0.2}  # fmt: skip
POLICY = {**FAST, "max_completion_length": 8, "eval_prompts": 4, "num_samples": 2}


@pytest.fixture
def worker():
    process = start_worker(BROKER_URL, queues="cpu,gpu", one_job_per_child=True)
    yield process
    stop(process)


def _assert_succeeded(run: TrainingRun) -> None:
    assert run.status == "succeeded", f"{run.kind}: {run.error}\n{run.log_tail[-3000:]}"
    version = run.output_model_version
    assert version is not None and len(version.sha256) == 64 and version.size_bytes > 0
    assert Path(version.artifact_uri, "config.json").is_file()
    assert version.dataset_snapshot_id == run.snapshot_id
    assert RunMetric.objects.filter(run=run).exists()
    assert run.progress == 1.0 and run.current_step == run.max_steps
    assert not services.run_dirs(run)[1].exists()  # checkpoints cleaned after success


@pytest.mark.e2e
def test_every_kind_end_to_end_through_a_real_worker(worker, preference_snapshot, sft_snapshot):
    reward = services.launch_run(kind="reward", config=FAST, snapshot=preference_snapshot)
    sft = services.launch_run(kind="sft", config=POLICY, snapshot=sft_snapshot)
    dpo = services.launch_run(kind="dpo", config=POLICY, snapshot=preference_snapshot)
    robust = services.launch_run(
        kind="dpo",
        snapshot=preference_snapshot,
        config={**POLICY, "loss_type": ["robust"], "label_smoothing": 0.1},
    )
    for run in (reward, sft, dpo, robust):
        _assert_succeeded(finished_run(run, worker))
    reward.refresh_from_db()
    assert "accuracy" in reward.eval_metrics or "eval_accuracy" in str(reward.eval_metrics)
    assert RunMetric.objects.filter(run=reward, name__contains="loss").count() >= FAST["max_steps"]

    reward_version = reward.output_model_version
    rl = {**POLICY, "batch_size": 4, "num_generations": 2}
    grpo = services.launch_run(
        kind="grpo",
        snapshot=preference_snapshot,
        reward_model_version=reward_version,
        config={
            **rl,
            "rewards": [
                {"type": "reward_model", "weight": 1.0},
                {"type": "length", "target": 20, "weight": 0.5},
            ],
        },
    )
    ppo = services.launch_run(
        kind="ppo",
        snapshot=preference_snapshot,
        reward_model_version=reward_version,
        config={k: v for k, v in rl.items() if k != "num_generations"},
    )
    for run in (grpo, ppo):
        run = finished_run(run, worker)
        _assert_succeeded(run)
        assert ModelParent.objects.filter(
            child=run.output_model_version, parent=reward_version, role="reward"
        ).exists()


def test_cancel_stops_within_a_step_and_leaves_no_artifact(worker, preference_snapshot):
    run = services.launch_run(
        kind="reward", snapshot=preference_snapshot, config={**FAST, "max_steps": 100000}
    )
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).current_step >= 3, timeout=180)
    seen = TrainingRun.objects.get(pk=run.pk).current_step
    services.request_cancel(run=run)
    run = finished_run(run, worker)
    assert run.status == "cancelled", run.error
    # the DB lags the trainer by at most one report: one more step may finish, then it stops
    assert run.current_step <= seen + 2, (seen, run.current_step)
    assert run.output_model_version is None
    assert not services.run_dirs(run)[0].exists()


def test_crashing_run_is_failed_with_traceback_and_no_artifact(
    worker, preference_snapshot, settings, tmp_path
):
    settings.MODEL_ROOTS = [tmp_path]  # a path a launch accepts, where no model is
    (tmp_path / "no-model-here").mkdir()  # it exists (a launch checks), but holds no model
    run = services.launch_run(
        kind="reward",
        snapshot=preference_snapshot,
        config=FAST,
        base_model=str(tmp_path / "no-model-here"),
    )
    run = finished_run(run, worker)
    assert run.status == "failed"
    # the reason first (the empty directory has no tokenizer to load), then the traceback
    assert run.error.startswith("ValueError: ") and "Traceback" in run.error
    assert run.output_model_version is None
    final_dir, work_dir = services.run_dirs(run)
    assert not final_dir.exists() and not work_dir.exists()


def test_killed_worker_resumes_from_checkpoint(preference_snapshot):
    first = start_worker(BROKER_URL, one_job_per_child=True)
    run = services.launch_run(
        kind="reward",
        snapshot=preference_snapshot,
        config={**FAST, "max_steps": 400, "save_steps": 20, "batch_size": 4},
    )
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).current_step >= 45, timeout=180)
    except Exception as exc:  # whatever failed, the worker is stopped
        raise AssertionError(f"{exc}\n{stop(first)}") from exc
    kill_tree(first)  # the worker and its child die mid-run, without acknowledging the job
    assert TrainingRun.objects.get(pk=run.pk).status == "running"

    second = start_worker(BROKER_URL, one_job_per_child=True)
    try:
        run = finished_run(run, second)
    finally:
        stop(second)
    _assert_succeeded(run)
    assert run.attempts == 2
    # resumed from a checkpoint, not from scratch: step 1 was trained (and logged) only once
    assert RunMetric.objects.filter(run=run, step=1, name="loss").count() == 1
    assert RunMetric.objects.filter(run=run, step=run.max_steps, name="loss").exists()


def test_launch_validates_config_and_inputs(preference_snapshot, sft_snapshot):
    with pytest.raises(DomainError, match="label_smoothing"):
        services.launch_run(
            kind="dpo",
            snapshot=preference_snapshot,
            config={"loss_type": ["robust"], "label_smoothing": 0.7},
        )
    with pytest.raises(DomainError, match="preference or ranking snapshot"):
        services.launch_run(kind="reward", snapshot=sft_snapshot)
    with pytest.raises(DomainError, match="reward model"):
        services.launch_run(kind="ppo", snapshot=preference_snapshot)
    with pytest.raises(DomainError, match="Unknown"):
        services.launch_run(kind="sft", snapshot=sft_snapshot, config={"no_such_field": 1})
    assert not TrainingRun.objects.exists()
