"""Issue 18 part 9, launch-time checks: what the worker would only find out later is a 400
naming the field through the API (and the same validator behind the form and ``manage.py
train``); the launch form offers only the snapshots and models that fit the kind."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from models_registry.models import ModelVersion, RegisteredModel
from tests.training.conftest import preference_rows, write_snapshot
from training.forms import GRPO_KL_NOTE, LaunchForm
from training.models import TrainingRun

pytestmark = pytest.mark.django_db
URL = "/api/v1/training-runs/"
RULES = [{"type": "length", "target": 40}, {"type": "regex", "pattern": "safe"}]


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _launch(api, snapshot, **fields):
    body = {"kind": "reward", "snapshot": snapshot.pk, **fields}
    return api.post(URL, json.dumps(body), content_type="application/json")


def _rejected(response, field: str, message: str) -> None:
    assert response.status_code == 400, response.content[:500]
    assert response.json()["field"] == field, response.json()
    assert message in response.json()["detail"], response.json()


def _cache_hub_model(cache, repo_id: str) -> None:
    """The layout huggingface_hub leaves after downloading ``repo_id``'s config."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "config.json").write_text("{}")


def test_missing_base_path_under_a_model_root_is_a_400(
    api, preference_snapshot, settings, tmp_path
):
    settings.MODEL_ROOTS = [tmp_path]
    _rejected(
        _launch(api, preference_snapshot, base_model=str(tmp_path / "gone")),
        "base_model",
        "does not exist",
    )
    _rejected(_launch(api, preference_snapshot, base_model="/etc"), "base_model", "MODEL_ROOTS")
    (tmp_path / "here").mkdir()
    assert _launch(api, preference_snapshot, base_model=str(tmp_path / "here")).status_code == 201


def test_hub_id_when_offline_must_be_in_the_local_cache(
    api, preference_snapshot, settings, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    settings.HF_HUB_OFFLINE = True
    _rejected(
        _launch(api, preference_snapshot, base_model="some-org/not-downloaded"),
        "base_model",
        "HF_HUB_OFFLINE",
    )
    _cache_hub_model(tmp_path, "some-org/downloaded")
    assert _launch(api, preference_snapshot, base_model="some-org/downloaded").status_code == 201
    settings.HF_HUB_OFFLINE = False  # a deployment that may download: the worker fetches it
    assert (
        _launch(api, preference_snapshot, base_model="some-org/not-downloaded").status_code == 201
    )


def test_empty_and_too_small_snapshots_are_a_400(api, project):
    empty = write_snapshot(project, "preference", [])
    _rejected(_launch(api, empty), "snapshot", "has no rows")
    one = write_snapshot(project, "preference", preference_rows(1))
    _rejected(_launch(api, one, config={"eval_fraction": 0.1}), "config.eval_fraction", "1 row")
    assert _launch(api, one, config={"eval_fraction": 0}).status_code == 201


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_the_cpu_queue_is_a_400(api, preference_snapshot, precision):
    _rejected(
        _launch(api, preference_snapshot, queue="cpu", config={"precision": precision}),
        "config.precision",
        "needs a GPU",
    )
    response = _launch(api, preference_snapshot, queue="gpu", config={"precision": precision})
    assert response.status_code == 201, response.content[:300]


def test_ppo_with_programmatic_rewards_needs_no_reward_model(api, preference_snapshot):
    response = _launch(api, preference_snapshot, kind="ppo", config={"rewards": RULES})
    assert response.status_code == 201, response.content[:300]
    assert TrainingRun.objects.get().reward_model_version is None
    _rejected(_launch(api, preference_snapshot, kind="ppo"), "reward_model_version", "reward model")
    _rejected(
        _launch(
            api,
            preference_snapshot,
            kind="ppo",
            config={"rewards": RULES, "value_init": "reward_model"},
        ),
        "config.value_init",
        "reward_model",
    )


def test_train_command_takes_the_launch_time_checks(preference_snapshot):
    with pytest.raises(CommandError, match="needs a GPU"):
        call_command(
            "train", "reward", "--snapshot", str(preference_snapshot.pk), "--set",
            'precision="bf16"',
        )  # fmt: skip
    assert not TrainingRun.objects.exists()


def test_launch_form_offers_what_fits_the_kind(
    client, admin_user, preference_snapshot, sft_snapshot
):
    reward = ModelVersion.objects.create(
        registered_model=RegisteredModel.objects.create(name="rm", kind="reward"), version=1
    )
    policy = ModelVersion.objects.create(
        registered_model=RegisteredModel.objects.create(name="pol", kind="sft"), version=1
    )

    def offered(form, field):
        return set(form.fields[field].queryset) if field in form.fields else None

    for kind in ("dpo", "reward"):
        assert offered(LaunchForm(kind), "snapshot") == {preference_snapshot}
    assert offered(LaunchForm("sft"), "snapshot") == {sft_snapshot}
    assert offered(LaunchForm("grpo"), "snapshot") == {preference_snapshot, sft_snapshot}
    for kind in ("sft", "dpo", "grpo", "ppo"):
        assert offered(LaunchForm(kind), "base_model_version") == {policy}
    assert offered(LaunchForm("reward"), "base_model_version") == {reward, policy}
    for kind in ("reward", "sft", "dpo"):
        assert offered(LaunchForm(kind), "reward_model_version") is None
    for kind in ("grpo", "ppo"):
        assert offered(LaunchForm(kind), "reward_model_version") == {reward}

    # an SFT snapshot posted to the DPO form is refused as not one of its choices
    form = LaunchForm("dpo", {"snapshot": sft_snapshot.pk, "queue": "cpu", "num_processes": 1})
    assert not form.is_valid() and "snapshot" in form.errors

    client.force_login(admin_user)
    grpo = client.get(reverse("training:launch", args=["grpo"])).content.decode()
    assert GRPO_KL_NOTE.split(":")[0] in grpo and 'name="reward_model_version"' in grpo
    dpo = client.get(
        reverse("training:launch", args=["dpo"]), {"snapshot": preference_snapshot.pk}
    ).content.decode()
    assert 'name="reward_model_version"' not in dpo and "GRPO logs no KL" not in dpo
    # the kind switch keeps the chosen snapshot (JS-free: another kind's page re-renders)
    assert f"/training/launch/sft/?snapshot={preference_snapshot.pk}" in dpo


@pytest.mark.training
def test_ppo_on_programmatic_rewards_trains_without_a_reward_model(preference_snapshot):
    """Not only accepted: the run trains and registers with no reward parent (in process)."""
    from training import services
    from training.executor import execute

    config = {"rewards": RULES, "max_steps": 2, "batch_size": 4, "max_length": 64,
              "max_completion_length": 8, "eval_prompts": 2, "save_steps": 0}  # fmt: skip
    run = services.launch_run(kind="ppo", snapshot=preference_snapshot, config=config)
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert not run.output_model_version.parent_links.filter(role="reward").exists()
