"""LoRA / QLoRA runs: every kind trains an adapter over a registered base and registers it with
the base in its lineage; adapters load back (scoring, evaluation, a later run) and download
merged as plain transformers models; QLoRA is refused where it cannot run."""

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from django.conf import settings
from rest_framework.test import APIClient
from safetensors import safe_open

from models_registry import adapters
from models_registry.models import ModelParent, ModelVersion
from models_registry.services import register_model_version
from tests.support import finished_run, start_worker, stop
from tests.training.conftest import BAD, GOOD
from training import services
from training.executor import execute
from training.models import RunMetric, TrainingRun
from training.tiny import save_tiny
from training.trainers import from_dict, run_training
from training.trainers.common import directory_digest, load_causal_lm, load_tokenizer
from training.trainers.config import ConfigError
from training.trainers.peft import quantization, target_modules
from training.trainers.reward import RewardScorer
from training.validation import LaunchRejected

pytestmark = [
    pytest.mark.training,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

LORA = {"peft": "lora", "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
FAST = {"max_steps": 3, "batch_size": 8, "learning_rate": 1e-2, "max_length": 64,
        "save_steps": 0, "eval_fraction": 0.2, **LORA}  # fmt: skip
POLICY = {**FAST, "max_completion_length": 8, "eval_prompts": 2, "num_samples": 1}
R = "/api/v1/registry/"


@pytest.fixture
def base_version(db):
    """A tiny causal LM registered as a base model version (what LoRA runs start from)."""
    path = settings.ARTIFACT_ROOT / "bases" / "tiny"
    save_tiny(path, texts=[*GOOD, *BAD, "User question number 1: can you help me?"], seed=0)
    sha256, size = directory_digest(path)
    return register_model_version(
        name="tiny-base", kind="base", artifact_uri=str(path), sha256=sha256, size_bytes=size
    )


def _assert_adapter(run: TrainingRun, base: ModelVersion) -> Path:
    """The run succeeded and registered an adapter over ``base``, named in its lineage."""
    assert run.status == "succeeded", f"{run.kind}: {run.error}\n{run.log_tail[-3000:]}"
    version = run.output_model_version
    folder = Path(version.artifact_uri)
    assert version.artifact_format == "adapter"
    assert (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()  # the adapter only, not full weights
    assert adapters.adapter_base(folder) == base.artifact_uri
    info = json.loads((folder / "training_run.json").read_text())
    assert info["base_model"] == base.artifact_uri and info["config"]["peft"] == "lora"
    assert ModelParent.objects.filter(child=version, parent=base, role="base").exists()
    assert "error" not in run.eval_metrics, run.eval_metrics
    assert RunMetric.objects.filter(run=run).exists()
    return folder


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_lora_every_kind_through_a_real_worker(base_version, preference_snapshot, sft_snapshot):
    # one pool child trains every run: torch is imported once (the runs are tiny)
    worker = start_worker(settings.CELERY_BROKER_URL, queues="cpu")
    try:
        launch = {"base_model_version": base_version}
        reward = services.launch_run(
            kind="reward", config=FAST, snapshot=preference_snapshot, **launch
        )
        sft = services.launch_run(kind="sft", config=POLICY, snapshot=sft_snapshot, **launch)
        dpo = services.launch_run(kind="dpo", config=POLICY, snapshot=preference_snapshot, **launch)
        reward = finished_run(reward, worker)
        rm_dir = _assert_adapter(reward, base_version)
        # the score head is trained and saved with the adapter (modules_to_save)
        assert "score" in adapters.adapter_config(rm_dir)["modules_to_save"]
        with safe_open(rm_dir / "adapter_model.safetensors", "pt") as weights:
            assert any("score" in key for key in weights.keys())  # noqa: SIM118
        assert 0 <= reward.eval_metrics["accuracy"] <= 1  # scored by the adapter, merged

        rl = {**POLICY, "batch_size": 4, "rewards": [{"type": "reward_model"}]}
        launch["reward_model_version"] = reward.output_model_version
        grpo = services.launch_run(
            kind="grpo", snapshot=preference_snapshot, config={**rl, "num_generations": 2}, **launch
        )
        ppo = services.launch_run(kind="ppo", snapshot=preference_snapshot, config=rl, **launch)
        for run in (sft, dpo, grpo, ppo):
            run = finished_run(run, worker)
            _assert_adapter(run, base_version)
            assert "kl_to_reference" in run.eval_metrics
        assert ModelParent.objects.filter(
            child=run.output_model_version, parent=reward.output_model_version, role="reward"
        ).exists()
    finally:
        stop(worker)


def _tar_members(response) -> dict[str, bytes]:
    data = b"".join(response.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _unpack(members: dict[str, bytes], into: Path) -> Path:
    for name, content in members.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_bytes(content)
    (top,) = {name.split("/")[0] for name in members}
    return into / top


@pytest.mark.django_db
def test_merged_download_loads_with_transformers_and_a_run_starts_from_an_adapter(
    base_version, preference_snapshot, sft_snapshot, admin_user, client, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    launch = {"base_model_version": base_version, "queue": "cpu"}
    reward = services.launch_run(kind="reward", config=FAST, snapshot=preference_snapshot, **launch)
    sft = services.launch_run(kind="sft", config=POLICY, snapshot=sft_snapshot, **launch)
    for run in (reward, sft):
        execute(run.pk)  # what the Celery task runs
        run.refresh_from_db()
        _assert_adapter(run, base_version)
    api = APIClient()
    api.force_authenticate(admin_user)
    prompts, answers = ["User question number 3: can you help me?"] * 2, [GOOD[0], BAD[0]]

    # a reward adapter merged: a plain sequence classifier scoring exactly as the adapter does
    rm = reward.output_model_version
    query = f"name={rm.registered_model.name}&version={rm.version}"
    response = api.get(R + f"model-versions/download-artifacts?{query}&format=merged")
    assert response.status_code == 200 and response["X-Artifact-Format"] == "full"
    merged_rm = _unpack(_tar_members(response), tmp_path / "rm")
    assert merged_rm.name.endswith("-merged") and not (merged_rm / "adapter_config.json").exists()
    loaded = AutoModelForSequenceClassification.from_pretrained(merged_rm)
    scorer = RewardScorer(rm.artifact_uri, device="cpu")
    scorer.model = loaded.eval()
    assert scorer(prompts, answers) == pytest.approx(
        RewardScorer(rm.artifact_uri, device="cpu")(prompts, answers), abs=1e-5
    )

    # the policy adapter: as stored (the adapter) and merged (the staff page's link)
    policy = sft.output_model_version
    stored = _tar_members(
        api.get(
            R + f"model-versions/download-artifacts?name={policy.registered_model.name}&version=1"
        )
    )
    assert any(name.endswith("/adapter_config.json") for name in stored)
    client.force_login(admin_user)
    page = client.get(f"/registry/versions/{policy.pk}/artifact/?format=merged")
    assert page.status_code == 200, page.content[:300]
    merged = _unpack(_tar_members(page), tmp_path / "policy")
    ids = load_tokenizer(str(merged))(prompts[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(merged).eval()(ids).logits
        via_adapter = load_causal_lm(policy.artifact_uri).eval()(ids).logits
        base = load_causal_lm(base_version.artifact_uri).eval()(ids).logits
    assert torch.allclose(plain, via_adapter, atol=1e-5)
    assert not torch.allclose(plain, base, atol=1e-4)  # the adapter changed the model

    # full weights have nothing to merge; an unknown format is refused
    base_query = f"name=tiny-base&version={base_version.version}"
    refused = api.get(R + f"model-versions/download-artifacts?{base_query}&format=merged")
    assert refused.status_code == 400 and "not an adapter" in refused.json()["detail"]
    assert api.get(R + f"model-versions/download-artifacts?{query}&format=zip").status_code == 400
    assert (
        client.get(f"/registry/versions/{base_version.pk}/artifact/?format=merged").status_code
        == 400
    )

    # a later LoRA run starts from the adapter version: its adapter sits on the merged model
    again = services.launch_run(
        kind="sft", config=POLICY, snapshot=sft_snapshot, base_model_version=policy
    )
    execute(again.pk)
    again.refresh_from_db()
    folder = _assert_adapter(again, policy)
    with torch.no_grad():
        stacked = load_causal_lm(str(folder)).eval()(ids).logits  # base + adapter 1 + adapter 2
    assert not torch.allclose(stacked, plain, atol=1e-4)


@pytest.mark.django_db
def test_qlora_is_refused_on_the_cpu_queue_and_where_bitsandbytes_or_cuda_is_missing(
    preference_snapshot,
):
    with pytest.raises(LaunchRejected, match="needs a CUDA GPU") as refused:
        services.launch_run(
            kind="reward", config={"peft": "qlora"}, snapshot=preference_snapshot, queue="cpu"
        )
    assert refused.value.field == "config.peft"
    assert refused.value.body()["field"] == "config.peft"
    assert not TrainingRun.objects.exists()
    # the gpu queue is accepted at launch; a worker without CUDA/bitsandbytes says why
    with pytest.raises(ValueError, match=r"bitsandbytes|CUDA GPU"):
        quantization(from_dict("sft", {"peft": "qlora"}))


def test_lora_settings_are_validated_and_targets_default_per_architecture():
    for bad, message in (
        ({"peft": "dora"}, "peft must be one of"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"lora_r": 0}, "lora_r must be at least 1"),
        ({"lora_target_modules": []}, "lora_target_modules must list"),
        ({"peft": "qlora", "precision": "fp32"}, "qlora"),
    ):
        with pytest.raises(ConfigError, match=message):
            from_dict("dpo", bad)
    config = from_dict("sft", LORA)
    assert target_modules(config, "gpt2") == ["c_attn", "c_proj", "c_fc"]
    assert "gate_proj" in target_modules(config, "llama")
    assert target_modules(config, "some-new-architecture") == "all-linear"
    chosen = from_dict("sft", {**LORA, "lora_target_modules": ["c_attn"]})
    assert target_modules(chosen, "gpt2") == ["c_attn"]


@pytest.mark.parametrize("kind", ["reward", "ppo"])
def test_lora_run_cancels_resumes_and_bundles_the_builtin_base(kind, tmp_path):
    """An adapter run resumes from its checkpoint (TRL's and our PPO's); on ``builtin:tiny``,
    whose base lives only in the run's work dir, the adapter carries its base along."""
    from tests.training.test_trainers import Recorder, preference_rows, prompt_rows

    out = tmp_path / kind
    config = {**(FAST if kind == "reward" else POLICY), "max_steps": 4, "save_steps": 2}
    if kind == "ppo":
        config.update(batch_size=4, rewards=[{"type": "length", "target": 10}])
    rows = preference_rows(16) if kind == "reward" else prompt_rows(8)
    data = {"base_model": "builtin:tiny", "rows": rows}
    # TRL sees the cancel at the end of step 3 (saving checkpoint-3), our PPO at step 2's end
    first = Recorder(cancel_after=2)
    result = run_training(kind, config, data, out, first.hooks)
    stopped = 3 if kind == "reward" else 2
    assert result.cancelled and first.steps == list(range(1, stopped + 1)) and not out.exists()
    second = Recorder()
    result = run_training(kind, config, data, out, second.hooks)
    assert second.steps == list(range(stopped + 1, 5)) and result.global_step == 4
    assert not result.cancelled
    assert "error" not in result.eval, result.eval
    assert adapters.is_adapter(out) and not (tmp_path / f"{kind}.work").exists()
    assert adapters.adapter_base(out) == str(out / "base")  # bundled: the work dir is gone
    if kind == "reward":
        scores = RewardScorer(out, device="cpu")(["Question 1: is it safe?"] * 2, ["yes", "no"])
        assert len(scores) == 2 and scores[0] != scores[1]
    else:
        assert load_causal_lm(str(out)).config.model_type == "gpt2"


def test_full_grpo_with_a_kl_reference_trains_from_an_adapter(tmp_path):
    """A full (non-LoRA) run from an adapter trains the merged model; GRPO's KL reference,
    which TRL rebuilds from the model's path, is the merged model too."""
    from tests.training.test_trainers import chat_rows, prompt_rows

    adapter = tmp_path / "sft"
    run_training(
        "sft",
        {**POLICY, "max_steps": 2},
        {"base_model": "builtin:tiny", "rows": chat_rows(8)},
        adapter,
    )
    assert adapters.is_adapter(adapter)
    config = {**POLICY, "peft": "none", "max_steps": 2, "beta": 0.04, "batch_size": 4,
              "num_generations": 2, "rewards": [{"type": "length", "target": 10}]}  # fmt: skip
    result = run_training(
        "grpo", config, {"base_model": str(adapter), "rows": prompt_rows(8)}, tmp_path / "grpo"
    )
    assert result.global_step == 2 and "error" not in result.eval, result.eval
    assert "kl" in result.metrics  # the reference was built and used
    assert (
        not adapters.is_adapter(tmp_path / "grpo")
        and (tmp_path / "grpo" / "model.safetensors").is_file()
    )
