"""Policy evaluation: reward under given scorers versus the reference, KL, sample completions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import fmean
from typing import Any

import torch

from training.trainers.common import (
    RunContext,
    Scorer,
    Text,
    default_device,
    load_causal_lm,
    load_model_config,
    load_tokenizer,
    prompt_budget,
    render_prompt,
)
from training.trainers.config import PolicyConfig
from training.trainers.sampling import response_logits, sample, token_logprobs


@torch.no_grad()
def evaluate_policy(
    policy_dir: str | Path,
    reference_dir: str | Path,
    prompts: list[Text],
    scorers: dict[str, Scorer],
    *,
    max_new_tokens: int,
    max_prompt_length: int | None = None,
    num_samples: int,
    seed: int,
) -> dict[str, Any]:
    """Sample from the policy and the reference on the same prompts and compare them.

    ``kl_to_reference`` is the Monte-Carlo estimate of KL(policy || reference) per completion
    (sum over its tokens of log pi - log pi_ref, on policy samples).
    """
    if not prompts:
        return {}
    device = default_device()
    tokenizer = load_tokenizer(str(policy_dir))
    policy = load_causal_lm(str(policy_dir)).to(device).eval()
    reference = load_causal_lm(str(reference_dir)).to(device).eval()
    texts = [render_prompt(tokenizer, p) for p in prompts]

    torch.manual_seed(seed)
    budget = {"max_new_tokens": max_new_tokens, "max_prompt_length": max_prompt_length}
    rollout = sample(policy, tokenizer, texts, **budget)
    torch.manual_seed(seed)
    baseline = sample(reference, tokenizer, texts, **budget)

    tokens = rollout.response_ids
    log_ratio = token_logprobs(response_logits(policy, rollout), tokens) - token_logprobs(
        response_logits(reference, rollout), tokens
    )
    kl = (log_ratio * rollout.response_mask).sum(dim=1)
    rewards = {
        name: {
            "policy": fmean(scorer(prompts, rollout.completions)),
            "reference": fmean(scorer(prompts, baseline.completions)),
        }
        for name, scorer in scorers.items()
    }
    return {
        "num_prompts": len(prompts),
        "kl_to_reference": kl.mean().item(),
        "mean_completion_tokens": rollout.response_mask.sum(dim=1).mean().item(),
        "reward": rewards,
        "samples": [
            {"prompt": text, "completion": ours, "reference_completion": theirs}
            for text, ours, theirs in zip(
                texts[:num_samples], rollout.completions, baseline.completions, strict=False
            )
        ],
    }


def evaluate_run_policy(
    config: PolicyConfig,
    ctx: RunContext,
    policy_dir: Path,
    prompts: list[Text],
    scorers: dict[str, Scorer],
) -> dict[str, Any]:
    """``evaluate_policy`` with the run's reference (``data['reference_model']`` or the base),
    on up to ``eval_prompts`` non-empty held-out prompts."""
    return evaluate_policy(
        policy_dir,
        ctx.data.get("reference_model") or ctx.base_model_path(),
        [p for p in prompts if p][: config.eval_prompts],
        scorers,
        max_new_tokens=config.max_completion_length,
        max_prompt_length=prompt_budget(config, load_model_config(str(policy_dir))),
        num_samples=config.num_samples,
        seed=config.seed,
    )


def reward_model_scorers(ctx: RunContext) -> dict[str, Scorer]:
    """One scorer per reward model named in ``data['reward_models']``."""
    from training.trainers.reward import RewardScorer

    return {name: RewardScorer(path) for name, path in ctx.reward_models.items()}


def preference_evaluation(
    config: PolicyConfig, ctx: RunContext, eval_rows: list[dict[str, Any]]
) -> Callable[[Path], dict[str, Any]]:
    """How a policy trained on preference rows (DPO, KTO, ORPO) is evaluated once saved: on its
    held-out rows' prompts, scored by the run's reward models."""
    prompts = [row.get("prompt", "") for row in eval_rows]
    return lambda path: evaluate_run_policy(config, ctx, path, prompts, reward_model_scorers(ctx))
