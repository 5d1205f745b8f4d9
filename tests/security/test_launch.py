"""Issue 17, absurd training launches: one validator (``training.validation``) behind the API,
the launch form and ``manage.py train`` — every bad value is a 400 (inline form error, command
error) naming the field and its limit, never a 201 or a 500; and a launch while the broker is
down fails clearly (503, run stored as failed), fast, instead of leaving a silent queued run."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import DatasetSnapshot
from models_registry.models import ModelVersion, RegisteredModel
from training import services
from training.models import TrainingRun

URL = "/api/v1/training-runs/"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def model_root(settings, tmp_path):
    root = tmp_path / "models"
    (root / "my-base").mkdir(parents=True)
    settings.MODEL_ROOTS = [root]
    return root


@pytest.fixture
def snapshot(project, settings):
    snap = DatasetSnapshot.objects.create(
        project=project, principle_set=project.principle_set, kind="preference", status="ready"
    )
    path = settings.ARTIFACT_ROOT / f"{snap.pk}.jsonl"
    row = {"prompt": "Hi?", "chosen": "Hello, happy to help.", "rejected": "Go away."}
    path.write_text(2 * (json.dumps(row) + "\n"))  # two: one is held out (eval_fraction)
    DatasetSnapshot.objects.filter(pk=snap.pk).update(artifact_path=str(path), row_count=2)
    snap.refresh_from_db()
    return snap


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _launch(api, snapshot, raw: str | None = None, **fields):
    body = {"kind": "reward", "snapshot": snapshot.pk, **fields}
    text = json.dumps(body) if raw is None else raw.replace("SNAPSHOT", str(snapshot.pk))
    return api.post(URL, text, content_type="application/json")


HUGE_LIST = list(range(100_000))
# (extra launch fields, the field the 400 must name, a piece of its message)
ABSURD = [
    ({"config": {"max_steps": 10**12}}, "config.max_steps", "TRAINING_MAX_STEPS"),
    ({"config": {"max_steps": 2**70}}, "config.max_steps", "at most"),
    ({"config": {"max_steps": -1}}, "config.max_steps", "at least 1"),
    ({"config": {"max_steps": "ten"}}, "config.max_steps", "number"),
    ({"config": {"max_steps": {"nested": {"object": 1}}}}, "config.max_steps", "number"),
    ({"config": {"max_steps": HUGE_LIST}}, "config.max_steps", "number"),
    ({"config": {"max_steps": 1.5}}, "config.max_steps", "integer"),
    ({"config": {"max_steps": True}}, "config.max_steps", "number"),
    ({"config": {"batch_size": 10**6}}, "config.batch_size", "TRAINING_MAX_BATCH_SIZE"),
    ({"config": {"max_length": 10**7}}, "config.max_length", "TRAINING_MAX_LENGTH"),
    (
        {"config": {"gradient_accumulation_steps": 10**9}},
        "config.gradient_accumulation_steps",
        "TRAINING_MAX_GRADIENT_ACCUMULATION",
    ),
    ({"config": {"learning_rate": 5.0}}, "config.learning_rate", "TRAINING_MAX_LEARNING_RATE"),
    ({"config": {"learning_rate": -1e-5}}, "config.learning_rate", "at least 0"),
    ({"config": {"warmup_steps": 2**70}}, "config.warmup_steps", "at most"),
    ({"config": {"seed": -1}}, "config.seed", "at least 0"),
    ({"config": {"seed": 2**64}}, "config.seed", "at most"),
    ({"config": {"save_total_limit": 10**9}}, "config.save_total_limit", "at most 1000"),
    ({"config": {"eval_fraction": "half"}}, "config.eval_fraction", "number"),
    (
        {"config": {"center_rewards_coefficient": "x"}},
        "config.center_rewards_coefficient",
        "number",
    ),
    (
        {"config": {"center_rewards_coefficient": [1]}},
        "config.center_rewards_coefficient",
        "number",
    ),
    ({"config": {"precision": ["bf16"]}}, "config.precision", "one of"),
    ({"config": {"activation_checkpointing": "yes"}}, "config.activation_checkpointing", "boolean"),
    ({"config": {"no_such_field": 1}}, "config", "Unknown"),
    ({"num_processes": 30000}, "num_processes", "TRAINING_MAX_PROCESSES"),
    ({"num_processes": 2**70}, "num_processes", "TRAINING_MAX_PROCESSES"),
    ({"num_processes": 0}, "num_processes", "between 1"),
    ({"base_model": "../../etc/passwd"}, "base_model", "MODEL_ROOTS"),
    ({"base_model": "/etc/passwd"}, "base_model", "model root"),
    ({"base_model": "/etc"}, "base_model", "model root"),
    ({"base_model": "org/../../name"}, "base_model", "hub id"),
    ({"base_model": "org/na..me"}, "base_model", "hub id"),
    ({"base_model": "a/b/c"}, "base_model", "hub id"),
    ({"base_model": "builtin:huge"}, "base_model", "builtin"),
    ({"base_model": "nope@1"}, "base_model", "no model version"),
    ({"base_model": "nope@99999999999999999999"}, "base_model", "name@version"),
    ({"base_model": "x" * 600}, "base_model", "500 characters"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "field", "message"), ABSURD)
def test_absurd_launch_is_a_400_naming_the_field_and_limit(
    api, snapshot, model_root, fields, field, message
):
    response = _launch(api, snapshot, **fields)
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert body.get("field") == field, body
    assert message in body["detail"], body
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"kind": "reward", "snapshot": SNAPSHOT, "config": {"learning_rate": 1e999}}', "rate"),
        ('{"kind": "reward", "snapshot": SNAPSHOT, "config": {"max_grad_norm": -1e999}}', "norm"),
        ('{"kind": "reward", "snapshot": SNAPSHOT, "config": {"learning_rate": NaN}}', ""),
        ('{"kind": "reward", "snapshot": SNAPSHOT, "config": [1, 2]}', "config"),
        ('{"kind": "reward", "snapshot": SNAPSHOT, "config": {"seed": 1e999}}', "seed"),
        ('{"kind": "reward", "snapshot": SNAPSHOT, "config": {"learning_rate": Infinity}}', ""),
    ],
)
def test_non_finite_floats_are_a_400_not_a_500(api, snapshot, raw, field):
    response = _launch(api, snapshot, raw=raw)
    assert response.status_code == 400, response.content[:500]
    said = json.dumps(response.json())  # the JSON parser may refuse them before the validator
    assert field in said or "JSON parse error" in said, said
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rewards", "field"),
    [
        ([{"type": "length", "target": 2**70}], "config.rewards.target"),
        ([{"type": "length", "target": 10, "weight": 1e300}], "config.rewards.weight"),
        ([{"type": "length", "target": 10, "weight": "heavy"}], "config.rewards.weight"),
        ([{"type": "strings", "required": ["x"] * 10_000}], "config.rewards.required"),
        ([{"type": "strings", "required": [{"deep": ["x"]}]}], "config.rewards.required"),
        ([{"type": "regex", "pattern": "a" * 5000}], "config.rewards.pattern"),
        ([{"type": "principles", "weights": {"reward": 2**70}}], "config.rewards.weights"),
        ([{"type": "principles", "priorities": {"reward": 2.5}}], "config.rewards.priorities"),
        ([{"type": "reward_model", "model": "/etc/passwd"}], "config.rewards"),
        ([{"type": "length", "target": 10}] * 1000, "config.rewards"),
        ("not a list", "config.rewards"),
    ],
)
def test_reward_specs_are_bounded_and_name_only_the_runs_reward_model(
    api, snapshot, rewards, field
):
    reward = RegisteredModel.objects.create(name="rm", kind="reward")
    version = ModelVersion.objects.create(registered_model=reward, version=1)
    response = _launch(
        api,
        snapshot,
        kind="grpo",
        reward_model_version=version.pk,
        config={"batch_size": 8, "num_generations": 2, "rewards": rewards},
    )
    assert response.status_code == 400, response.content[:500]
    assert response.json()["field"] == field, response.json()
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_sound_base_models_are_accepted(api, snapshot, model_root, tmp_path, settings):
    settings.HF_HUB_OFFLINE = False  # a deployment that downloads hub models
    policy = RegisteredModel.objects.create(name="policy", kind="sft")
    version = ModelVersion.objects.create(registered_model=policy, version=3, artifact_uri="/x")
    inside_link = model_root / "alias"
    inside_link.symlink_to(model_root / "my-base")
    outside = tmp_path / "outside"
    outside.mkdir()
    (model_root / "escape").symlink_to(outside)

    for base, stored in [
        ("builtin:tiny", "builtin:tiny"),
        ("some-org/some_model-1.5", "some-org/some_model-1.5"),
        (str(model_root / "my-base"), str(model_root / "my-base")),
        (str(inside_link), str(model_root / "my-base")),  # symlinks resolved
        ("policy@3", ""),
    ]:
        response = _launch(api, snapshot, base_model=base)
        assert response.status_code == 201, (base, response.content[:500])
        run = TrainingRun.objects.get(pk=response.json()["id"])
        assert run.base_model == stored
    assert TrainingRun.objects.filter(base_model_version=version).count() == 1
    # a symlink inside a root that leads outside it, and ".." out of a root, are refused
    for base in (str(model_root / "escape"), f"{model_root}/../outside"):
        response = _launch(api, snapshot, base_model=base)
        assert response.status_code == 400 and response.json()["field"] == "base_model"


@pytest.mark.django_db
def test_config_schema_states_the_bounds(api, settings):
    settings.TRAINING_MAX_STEPS = 500
    fields = {f["name"]: f for f in api.get(f"{URL}config-schema/?kind=dpo").json()}
    assert fields["max_steps"]["minimum"] == 1 and fields["max_steps"]["maximum"] == 500
    assert fields["beta"]["maximum"] == 1000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "error_on"),
    [
        ({"config_max_steps": str(10**12)}, "config_max_steps"),
        ({"config_max_steps": str(2**70)}, "config_max_steps"),
        ({"config_learning_rate": "1e999"}, "config_learning_rate"),
        ({"config_learning_rate": "nan"}, "config_learning_rate"),
        ({"config_learning_rate": "0"}, "config_learning_rate"),
        ({"config_max_length": str(10**7)}, "config_max_length"),
        ({"base_model": "../../etc/passwd"}, "base_model"),
        ({"num_processes": "30000"}, "num_processes"),
    ],
)
def test_launch_form_shows_the_error_beside_the_field(
    client, admin_user, snapshot, fields, error_on
):
    client.force_login(admin_user)
    page = client.post(
        reverse("training:launch", args=["reward"]),
        {"snapshot": snapshot.pk, "queue": "cpu", "num_processes": 1, **fields},
    )
    assert page.status_code == 200
    assert error_on in page.context["form"].errors, page.context["form"].errors
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", f"max_steps={2**70}"], "max_steps must be at most"),
        (["--set", "max_steps=" + "9" * 400], "max_steps must be at most"),
        (["--set", "learning_rate=1e999"], "learning_rate must be a finite number"),
        (["--set", "batch_size=1000000"], "TRAINING_MAX_BATCH_SIZE"),
        (["--base", "../../etc/passwd"], "MODEL_ROOTS"),
        (["--processes", "30000"], "TRAINING_MAX_PROCESSES"),
        (["--config", "[1, 2]"], "JSON object"),
        (["--reward-model", "nope@1"], "no model version"),
    ],
)
def test_train_command_takes_the_same_validator(snapshot, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("train", "reward", "--snapshot", str(snapshot.pk), *args)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_launch_while_the_broker_is_down_fails_fast_and_is_never_left_queued(
    api, snapshot, broker_down
):
    started = time.monotonic()
    response = _launch(api, snapshot, config={"max_steps": 5})
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.content[:500]
    assert "broker is unreachable" in response.json()["detail"]
    assert elapsed < 10, elapsed
    (run,) = TrainingRun.objects.all()
    assert run.status == "failed" and "broker is unreachable" in run.error
    assert run.finished_at is not None

    with pytest.raises(CommandError, match="broker is unreachable"):
        call_command("train", "reward", "--snapshot", str(snapshot.pk))
    assert not TrainingRun.objects.filter(status="queued").exists()
    assert TrainingRun.objects.filter(status="failed").count() == 2


@pytest.mark.django_db(transaction=True)
def test_service_launch_while_the_broker_is_down_raises_queue_unavailable(snapshot, broker_down):
    from common.background import QueueUnavailable

    with pytest.raises(QueueUnavailable):
        services.launch_run(kind="reward", snapshot=snapshot)
    assert TrainingRun.objects.get().status == "failed"
