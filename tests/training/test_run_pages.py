"""Training pages and the ``train`` command: permissions, launch form, live status, cancel,
and the multi-process (torchrun, gloo) path of the executor."""

from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from training import services
from training.executor import execute
from training.models import TrainingRun

FAST = {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "max_length": 64,
        "save_steps": 0, "eval_fraction": 0.2, "max_completion_length": 8,
        "eval_prompts": 2, "num_samples": 1}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["annotator", "viewer"])
def test_training_pages_are_for_admins_and_managers(client, make_user, role, preference_snapshot):
    run = services.launch_run(kind="reward", snapshot=preference_snapshot)
    client.force_login(make_user(f"{role}-user", role=role))
    for url in (
        reverse("training:runs"),
        reverse("training:launch", args=["reward"]),
        reverse("training:run", args=[run.pk]),
    ):
        assert client.get(url).status_code == 403
    assert client.post(reverse("training:cancel", args=[run.pk])).status_code == 403
    assert TrainingRun.objects.get(pk=run.pk).status == "queued"
    client.logout()
    assert client.get(reverse("training:runs")).status_code == 302  # anonymous → login


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["reward", "sft", "dpo", "grpo", "ppo", "kto", "orpo"])
def test_launch_form_renders_every_config_field(client, admin_user, kind):
    from training import trainers

    client.force_login(admin_user)
    page = client.get(reverse("training:launch", args=[kind]))
    assert page.status_code == 200
    for spec in trainers.describe_fields(kind):
        assert f'name="config_{spec["name"]}"' in page.content.decode()


@pytest.mark.django_db
def test_launch_from_the_form_queues_a_validated_run(client, admin_user, preference_snapshot):
    client.force_login(admin_user)
    url = reverse("training:launch", args=["dpo"])
    bad = client.post(
        url,
        {
            "snapshot": preference_snapshot.pk,
            "queue": "cpu",
            "num_processes": 1,
            "config_loss_type": '["robust"]',
            "config_label_smoothing": 0.9,
        },
    )
    assert bad.status_code == 200 and b"label_smoothing" in bad.content
    assert not TrainingRun.objects.exists()

    good = client.post(
        url,
        {
            "snapshot": preference_snapshot.pk,
            "queue": "gpu",
            "num_processes": 1,
            "config_max_steps": 7,
            "config_loss_type": '["sigmoid", "sft"]',
        },
    )
    run = TrainingRun.objects.get()
    assert good.status_code == 302 and good["Location"] == reverse("training:run", args=[run.pk])
    assert (run.kind, run.queue, run.config["max_steps"]) == ("dpo", "gpu", 7)
    assert run.config["loss_type"] == ["sigmoid", "sft"] and run.config["beta"] == 0.1

    page = client.get(reverse("training:run", args=[run.pk]))
    assert b'hx-trigger="every 2s"' in page.content and b"Cancel run" in page.content
    partial = client.get(reverse("training:run", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and b"run-status" in partial.content

    client.post(reverse("training:cancel", args=[run.pk]), HTTP_HX_REQUEST="true")
    run.refresh_from_db()
    assert run.status == "cancelled"  # a queued run is cancelled at once


@pytest.mark.django_db
def test_train_command_validates_and_queues(preference_snapshot, capsys):
    call_command(
        "train",
        "reward",
        "--snapshot",
        str(preference_snapshot.pk),
        "--set",
        "max_steps=5",
        "--queue",
        "gpu",
    )
    run = TrainingRun.objects.get()
    assert (run.queue, run.config["max_steps"]) == ("gpu", 5)
    assert f"run {run.pk} queued on gpu" in capsys.readouterr().out
    with pytest.raises(CommandError, match="max_steps"):
        call_command(
            "train", "reward", "--snapshot", str(preference_snapshot.pk), "--set", "max_steps=0"
        )
    with pytest.raises(CommandError, match="no model version"):
        call_command(
            "train", "ppo", "--snapshot", str(preference_snapshot.pk), "--reward-model", "nope@1"
        )


@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_multi_process_run_under_torchrun_on_cpu(preference_snapshot, monkeypatch):
    """num_processes=2: the executor spawns torchrun (gloo), relays rank 0's progress and hands
    on the result rank 0 reported, world size included (the log tail holds torchrun's output
    and the progress lines, neither of which names the world size)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = services.launch_run(
        kind="dpo", snapshot=preference_snapshot, config=FAST, num_processes=2
    )
    with mock.patch.object(services, "finish_run", wraps=services.finish_run) as finish_run:
        execute(run.pk)  # what the Celery task runs
    run.refresh_from_db()
    assert run.status == "succeeded", run.error or run.log_tail[-3000:]
    assert run.output_model_version.sha256
    assert run.metrics.filter(name="loss").count() == FAST["max_steps"]
    assert run.current_step == FAST["max_steps"]
    (finished,) = finish_run.call_args_list
    assert finished.kwargs["result"].metrics["world_size"] == 2


@pytest.mark.django_db
def test_api_launch_validates_config_and_cancel_reports_finished_runs(
    admin_user, preference_snapshot
):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(admin_user)
    bad = api.post(
        "/api/v1/training-runs/",
        {
            "kind": "dpo",
            "snapshot": preference_snapshot.pk,
            "config": {"loss_type": ["robust"], "label_smoothing": 0.9},
        },
        format="json",
    )
    assert bad.status_code == 400 and "label_smoothing" in bad.json()["detail"]
    assert not TrainingRun.objects.exists()

    made = api.post(
        "/api/v1/training-runs/",
        {
            "kind": "reward",
            "snapshot": preference_snapshot.pk,
            "config": {"max_steps": 3},
        },
        format="json",
    )
    assert made.status_code == 201 and made.json()["config"]["max_steps"] == 3
    run_id = made.json()["id"]
    assert api.post(f"/api/v1/training-runs/{run_id}/cancel/").json()["status"] == "cancelled"
    again = api.post(f"/api/v1/training-runs/{run_id}/cancel/")
    assert again.status_code == 400 and "already cancelled" in again.json()["detail"]

    schema = api.get("/api/v1/training-runs/config-schema/?kind=grpo").json()
    assert {"name": "num_generations", "type": "int", "default": 8}.items() <= {
        k: v for f in schema if f["name"] == "num_generations" for k, v in f.items()
    }.items()
    assert api.get("/api/v1/training-runs/config-schema/?kind=nope").status_code == 400


@pytest.mark.django_db
def test_finished_runs_send_the_run_finished_webhook(
    preference_snapshot, django_capture_on_commit_callbacks
):
    from annotation.models import WebhookDelivery
    from annotation.webhooks import services as webhook_services

    webhook_services.create_webhook(url="https://hooks.example.org/run", events=["run.finished"])
    cancelled = services.launch_run(kind="reward", snapshot=preference_snapshot)
    failed = services.launch_run(kind="reward", snapshot=preference_snapshot)
    with django_capture_on_commit_callbacks(execute=True):  # events are sent after commit
        services.request_cancel(run=cancelled)
        services.fail_run(run_id=failed.pk, error="Traceback: boom", log_tail="")
    payloads = sorted(
        (d.payload["status"], d.payload["kind"])
        for d in WebhookDelivery.objects.filter(event="run.finished")
    )
    assert payloads == [("cancelled", "reward"), ("failed", "reward")]
