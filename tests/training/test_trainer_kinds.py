"""KTO and ORPO runs, ranking -> pairwise expansion, the trainer options reaching TRL, and the
refusals of options this machine cannot honour (issue 18 parts 5, 7 and "not exposed")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from rest_framework.test import APIClient

from common.errors import DomainError
from models_registry.models import ModelParent
from tests.support import finished_run, start_worker, stop
from tests.training.conftest import BAD, GOOD, preference_rows, write_snapshot
from training import services
from training.datasets import ranking_pairs, training_rows
from training.models import RunMetric, TrainingRun
from training.trainers import Hooks, from_dict, run_training
from training.trainers.common import run_steps, trl_arguments
from training.trainers.config import ConfigError, check_runtime
from training.trainers.grpo import vllm_arguments

torch.set_num_threads(1)

FAST = {
    "max_steps": 4,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "max_length": 64,
    "save_steps": 0,
    "eval_fraction": 0.2,
}
POLICY = {**FAST, "max_completion_length": 8, "eval_prompts": 2, "num_samples": 1}
HAS = {name: importlib.util.find_spec(name) is not None for name in ("liger_kernel", "vllm")}


def ranking_row(i: int) -> dict:
    """Four responses: a best, a tie of two in the middle, a worst."""
    return {
        "prompt": f"Ranking question {i}: can you help?",
        "completions": [BAD[0], GOOD[0], GOOD[1], BAD[1]],
        "ranking": [[1], [0, 2], [3]],
    }


# --- ranking -> pairwise (pure) --------------------------------------------------------------


def test_ranking_all_pairs_are_every_ordered_pair_without_ties():
    row = {"prompt": "p", "completions": ["a", "b", "c", "d"], "ranking": [[2], [0], [3], [1]]}
    pairs = [(p["chosen"], p["rejected"]) for p in ranking_pairs(row, "all")]
    assert len(pairs) == 4 * 3 // 2
    assert set(pairs) == {("c", "a"), ("c", "d"), ("c", "b"), ("a", "d"), ("a", "b"), ("d", "b")}


def test_ranking_ties_give_no_pair_and_modes_differ():
    row = ranking_row(0)
    best, tie_a, tie_b, worst = GOOD[0], BAD[0], GOOD[1], BAD[1]
    every = {(p["chosen"], p["rejected"]) for p in ranking_pairs(row, "all")}
    assert (tie_a, tie_b) not in every and (tie_b, tie_a) not in every
    assert every == {(best, tie_a), (best, tie_b), (best, worst), (tie_a, worst), (tie_b, worst)}
    adjacent = {(p["chosen"], p["rejected"]) for p in ranking_pairs(row, "adjacent")}
    assert adjacent == {(best, tie_a), (best, tie_b), (tie_a, worst), (tie_b, worst)}
    rest = {(p["chosen"], p["rejected"]) for p in ranking_pairs(row, "best_vs_rest")}
    assert rest == {(best, tie_a), (best, tie_b), (best, worst)}
    assert all(p["prompt"] == row["prompt"] for p in ranking_pairs(row, "all"))
    with pytest.raises(ValueError, match="ranking_pairs"):
        ranking_pairs(row, "sideways")


@pytest.mark.django_db
def test_snapshots_become_rows_per_kind(project):
    ranking = write_snapshot(project, "ranking", [ranking_row(i) for i in range(3)])
    assert len(training_rows("reward", ranking, {"ranking_pairs": "all"})) == 3 * 5
    assert len(training_rows("dpo", ranking, {"ranking_pairs": "best_vs_rest"})) == 3 * 3
    kto_from_ranking = training_rows("kto", ranking)
    assert [(r["completion"], r["label"]) for r in kto_from_ranking[:2]] == [
        (GOOD[0], True),
        (BAD[1], False),
    ]
    preference = write_snapshot(project, "preference", preference_rows(5))
    unpaired = training_rows("kto", preference)
    assert len(unpaired) == 10 and [r["label"] for r in unpaired[:2]] == [True, False]
    assert {r["completion"] for r in unpaired if r["label"]} <= set(GOOD)


# --- config and TRL arguments ----------------------------------------------------------------


def test_new_kinds_and_option_rules():
    assert from_dict("kto", {}).beta == 0.1 and from_dict("orpo", {}).beta == 0.1
    with pytest.raises(ConfigError, match="batch_size must be at least 2 for KTO"):
        from_dict("kto", {"batch_size": 1})
    with pytest.raises(ConfigError, match="warmup_ratio replaces warmup_steps"):
        from_dict("dpo", {"warmup_ratio": 0.1, "warmup_steps": 5})
    with pytest.raises(ConfigError, match="early_stopping_patience needs eval_steps"):
        from_dict("sft", {"early_stopping_patience": 2})
    with pytest.raises(ConfigError, match="eval_steps needs held-out rows"):
        from_dict("reward", {"eval_steps": 2, "eval_fraction": 0})
    with pytest.raises(ConfigError, match="torch_compile is not supported by ppo") as caught:
        from_dict("ppo", {"torch_compile": True})
    assert caught.value.field == "torch_compile"
    with pytest.raises(ConfigError, match="vllm_server_base_url"):
        from_dict("grpo", {"use_vllm": True, "vllm_mode": "server"})
    grpo = {"batch_size": 2, "num_generations": 4, "gradient_accumulation_steps": 2}
    assert from_dict("grpo", grpo).steps_per_generation is None  # 2 x 2 rows per generation
    with pytest.raises(ConfigError, match="steps_per_generation"):
        from_dict("grpo", {**grpo, "steps_per_generation": 1})  # 2 x 1: not divisible by 4
    with pytest.raises(ConfigError, match="eval_steps evaluates batch_size"):
        from_dict("grpo", {**grpo, "eval_steps": 5})


def test_options_reach_trl_arguments(tmp_path):
    from trl import DPOConfig, GRPOConfig

    config = from_dict(
        "dpo",
        {
            **POLICY,
            "max_steps": 50,
            "optim": "adafactor",
            "weight_decay": 0.05,
            "warmup_ratio": 0.1,
            "num_train_epochs": 2,
            "eval_steps": 5,
            "early_stopping_patience": 2,
            "metric_for_best_model": "rewards/accuracies",
            "precompute_ref_log_probs": True,
            "torch_compile": True,
        },
    )
    args = DPOConfig(
        **trl_arguments(config, tmp_path, train_rows=30),
        precompute_ref_log_probs=config.precompute_ref_log_probs,
    )
    assert args.optim == "adafactor" and args.weight_decay == 0.05
    assert args.warmup_steps == 0.1  # transformers 5: a float below 1 is a ratio
    assert args.max_steps == 15  # 2 epochs x 30 rows / 4 per step, under max_steps=50
    assert args.eval_strategy == "steps" and args.eval_steps == 5
    assert args.metric_for_best_model == "rewards/accuracies" and args.greater_is_better
    assert args.precompute_ref_log_probs and args.torch_compile and not args.use_liger_kernel
    assert run_steps(config, 10_000) == 50  # max_steps stays the stop

    grpo = from_dict(
        "grpo",
        {
            **POLICY,
            "num_generations": 2,
            "scale_rewards": "batch",
            "top_p": 0.9,
            "top_k": 20,
            "mask_truncated_completions": True,
            "steps_per_generation": 2,
            "beta": 0.0,
        },
    )
    grpo_args = GRPOConfig(
        **trl_arguments(grpo, tmp_path),
        num_generations=2,
        scale_rewards=grpo.scale_rewards,
        mask_truncated_completions=grpo.mask_truncated_completions,
        steps_per_generation=grpo.steps_per_generation,
        top_p=grpo.top_p,
        top_k=grpo.top_k,
        **vllm_arguments(grpo),
    )
    assert (grpo_args.scale_rewards, grpo_args.top_p, grpo_args.top_k) == ("batch", 0.9, 20)
    assert grpo_args.mask_truncated_completions and grpo_args.steps_per_generation == 2
    assert not grpo_args.use_vllm
    colocate = from_dict("grpo", {"num_generations": 2, "use_vllm": True})
    assert vllm_arguments(colocate) == {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
        "vllm_enable_sleep_mode": True,
    }
    server = from_dict(
        "grpo",
        {
            "num_generations": 2,
            "use_vllm": True,
            "vllm_mode": "server",
            "vllm_server_base_url": "http://vllm:8000",
        },
    )
    assert vllm_arguments(server)["vllm_server_base_url"] == "http://vllm:8000"


def test_options_this_machine_cannot_honour_are_refused():
    cases = [
        ("dpo", {"attn_implementation": "flash_attention_2"}, "attn_implementation", "flash_attn"),
        ("sft", {"padding_free": True}, "padding_free", "flash_attention_2"),
        ("reward", {"optim": "adamw_8bit"}, "optim", "bitsandbytes"),
        ("grpo", {"num_generations": 2, "use_vllm": True}, "use_vllm", "vllm"),
        ("ppo", {"use_vllm": True}, "use_vllm", "generate"),
    ]
    if not HAS["liger_kernel"]:
        cases.append(("kto", {"use_liger_kernel": True}, "use_liger_kernel", "liger-kernel"))
    for kind, values, field, words in cases:
        with pytest.raises(ConfigError, match=words) as caught:
            check_runtime(from_dict(kind, values), gpu=False)
        assert caught.value.field == field and "CPU worker" in str(caught.value)
    check_runtime(from_dict("dpo", {"attn_implementation": "sdpa", "optim": "sgd"}), gpu=False)


@pytest.mark.training
def test_worker_refuses_what_its_device_cannot_do(tmp_path):
    data = {"base_model": "builtin:tiny", "rows": preference_rows(8)}
    with pytest.raises(ConfigError, match="vLLM rollouts need a CUDA GPU"):
        run_training("ppo", {"use_vllm": True}, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.training
def test_in_training_evaluation_and_early_stopping(tmp_path):
    logged: list[dict] = []
    result = run_training(
        "dpo",
        # SGD at a vanishing rate leaves the weights as they are: the held-out loss never
        # improves after the first evaluation, so patience 1 stops at the second.
        {
            **POLICY,
            "max_steps": 12,
            "optim": "sgd",
            "learning_rate": 1e-30,
            "eval_steps": 1,
            "early_stopping_patience": 1,
            "warmup_ratio": 0.0,
            "attn_implementation": "eager",
        },
        {"base_model": "builtin:tiny", "rows": preference_rows(20)},
        tmp_path / "out",
        Hooks(on_metrics=lambda step, max_steps, logs: logged.append(logs)),
    )
    assert result.artifact_path is not None and not result.cancelled
    assert result.global_step == 2
    assert sum("eval_loss" in logs for logs in logged) == 2


def test_vllm_token_ids_become_a_rollout_like_generate_makes():
    from training.tiny import build_tiny_tokenizer
    from training.trainers.sampling import rollout_from_ids

    tokenizer = build_tiny_tokenizer(["hello there", "general kenobi"])
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    rollout = rollout_from_ids(tokenizer, [[5, 6, 7], [8]], [[9, eos, 10, 11], [12, 13, 14]], "cpu")
    assert rollout.prompt_length == 3
    assert rollout.response_ids.tolist() == [[9, eos, pad], [12, 13, 14]]  # cut after EOS
    assert rollout.input_ids.tolist() == [[5, 6, 7, 9, eos, pad], [pad, pad, 8, 12, 13, 14]]
    assert rollout.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert rollout.response_mask.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    assert rollout.completions == tokenizer.batch_decode(
        [[9, eos], [12, 13, 14]], skip_special_tokens=True
    )


# --- through services.launch_run and a real worker -------------------------------------------


@pytest.mark.django_db
def test_launch_refuses_options_with_field_and_reason(project, admin_user):
    preference = write_snapshot(project, "preference", preference_rows(8))
    sft = write_snapshot(project, "sft", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DomainError, match="vLLM rollouts need a CUDA GPU") as caught:
        services.launch_run(kind="grpo", snapshot=preference, config={"use_vllm": True,
                            "num_generations": 2})  # fmt: skip
    assert caught.value.field == "config.use_vllm"
    with pytest.raises(DomainError, match="needs a kto or preference or ranking snapshot"):
        services.launch_run(kind="kto", snapshot=sft)
    api = APIClient()
    api.force_authenticate(admin_user)
    response = api.post(
        "/api/v1/training-runs/",
        {
            "kind": "dpo",
            "snapshot": preference.pk,
            "base_model": "builtin:tiny",
            "config": {"attn_implementation": "flash_attention_2"},
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "flash_attention_2 needs a CUDA GPU" in response.json()["detail"]
    assert response.json()["field"] == "config.attn_implementation"
    assert not TrainingRun.objects.exists()


def _succeeded(run: TrainingRun) -> TrainingRun:
    assert run.status == "succeeded", f"{run.kind}: {run.error}\n{run.log_tail[-3000:]}"
    version = run.output_model_version
    assert version.registered_model.kind == run.kind and len(version.sha256) == 64
    assert Path(version.artifact_uri, "config.json").is_file()
    assert RunMetric.objects.filter(run=run, name="loss").exists()
    return run


@pytest.mark.worker
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_orpo_kto_and_ranking_reward_through_a_real_worker(project):
    from django.conf import settings

    preference = write_snapshot(project, "preference", preference_rows(24))
    ranking = write_snapshot(project, "ranking", [ranking_row(i) for i in range(8)])
    kto_rows = [
        {
            "prompt": f"Question {i}?",
            "completion": (GOOD if i % 2 else BAD)[i // 2 % 2],
            "label": bool(i % 2),
        }
        for i in range(24)
    ]
    kto_snapshot = write_snapshot(project, "kto", kto_rows)
    worker = start_worker(settings.CELERY_BROKER_URL, queues="cpu,gpu", one_job_per_child=True)
    try:
        orpo = services.launch_run(kind="orpo", config=POLICY, snapshot=preference)
        reward = services.launch_run(
            kind="reward", config={**FAST, "ranking_pairs": "adjacent"}, snapshot=ranking
        )
        orpo = _succeeded(finished_run(orpo, worker))
        assert "kl_to_reference" in orpo.eval_metrics  # evaluated like DPO
        reward = _succeeded(finished_run(reward, worker))
        assert "accuracy" in reward.eval_metrics
        # KTO from the ORPO policy: lineage names it as base and as reference
        kto = services.launch_run(
            kind="kto",
            config=POLICY,
            snapshot=kto_snapshot,
            base_model_version=orpo.output_model_version,
        )
        kto = _succeeded(finished_run(kto, worker))
    finally:
        stop(worker)
    assert "kl_to_reference" in kto.eval_metrics
    roles = set(
        ModelParent.objects.filter(
            child=kto.output_model_version, parent=orpo.output_model_version
        ).values_list("role", flat=True)
    )
    assert roles == {"base", "reference"}
    assert not ModelParent.objects.filter(child=orpo.output_model_version, role="reference")


@pytest.mark.django_db
def test_launch_form_offers_the_new_kinds_and_shows_refusals(client, admin_user, project):
    from django.urls import reverse

    preference = write_snapshot(project, "preference", preference_rows(8))
    client.force_login(admin_user)
    grpo_page = client.get(reverse("training:launch", args=["grpo"])).content.decode()
    assert "no KL" in grpo_page and 'name="config_use_vllm"' in grpo_page
    refused = client.post(
        reverse("training:launch", args=["kto"]),
        {
            "snapshot": preference.pk,
            "queue": "cpu",
            "num_processes": 1,
            "config_optim": "adamw_8bit",
        },
    )
    assert refused.status_code == 200 and b"adamw_8bit needs a CUDA GPU" in refused.content
    assert not TrainingRun.objects.exists()
    made = client.post(
        reverse("training:launch", args=["kto"]),
        {
            "snapshot": preference.pk,
            "queue": "cpu",
            "num_processes": 1,
            "config_desirable_weight": 1.5,
        },
    )
    run = TrainingRun.objects.get()
    assert made.status_code == 302 and run.kind == "kto"
    assert run.config["desirable_weight"] == 1.5 and run.config["beta"] == 0.1
