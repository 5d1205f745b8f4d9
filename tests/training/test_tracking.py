"""report_to: experiment trackers per run and per deployment (off by default); the platform's
own metric rows are written either way."""

from __future__ import annotations

import importlib.util

import pytest

from tests.training.conftest import preference_rows, write_snapshot
from training import services
from training.executor import execute
from training.validation import LaunchRejected

RUN = {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "max_length": 64,
       "save_steps": 0, "eval_fraction": 0.2}  # fmt: skip


@pytest.mark.django_db
def test_report_to_defaults_from_the_deployment_and_is_checked(preference_snapshot, settings):
    run = services.launch_run(kind="reward", snapshot=preference_snapshot, config=RUN)
    assert run.config["report_to"] == []  # off by default
    settings.TRAINING_REPORT_TO = ["tensorboard"]
    run = services.launch_run(kind="reward", snapshot=preference_snapshot, config=RUN)
    assert run.config["report_to"] == ["tensorboard"]
    run = services.launch_run(
        kind="reward", snapshot=preference_snapshot, config={**RUN, "report_to": []}
    )
    assert run.config["report_to"] == []
    with pytest.raises(LaunchRejected, match="report_to takes distinct trackers") as bad:
        services.launch_run(
            kind="reward", snapshot=preference_snapshot, config={**RUN, "report_to": ["comet"]}
        )
    assert bad.value.field == "config.report_to"


@pytest.mark.django_db
def test_a_tracker_that_is_not_installed_is_refused_at_launch(preference_snapshot):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here: no tracker is missing")
    with pytest.raises(LaunchRejected, match="wandb tracking needs the wandb package") as refused:
        services.launch_run(
            kind="reward", snapshot=preference_snapshot, config={**RUN, "report_to": ["wandb"]}
        )
    assert refused.value.field == "config.report_to"


@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_tensorboard_and_mlflow_receive_metrics_beside_run_metrics(project, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="tensorboard (dev extra)")
    pytest.importorskip("mlflow", reason="mlflow-skinny (dev extra)")
    from mlflow.tracking import MlflowClient

    boards, mlruns = tmp_path / "tb", tmp_path / "mlruns"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(boards))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlruns.as_uri())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tracking-test")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local store, offline
    snapshot = write_snapshot(project, "preference", preference_rows(24))
    run = services.launch_run(
        kind="reward",
        snapshot=snapshot,
        config={**RUN, "report_to": ["tensorboard", "mlflow"]},
    )
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error or run.log_tail[-3000:]
    assert run.metrics.filter(name="loss").count() == RUN["max_steps"]

    events = list(boards.rglob("events.out.tfevents.*"))
    assert events and any(e.stat().st_size > 100 for e in events)

    client = MlflowClient(tracking_uri=mlruns.as_uri())
    experiment = client.get_experiment_by_name("tracking-test")
    (tracked,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(tracked.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2]
