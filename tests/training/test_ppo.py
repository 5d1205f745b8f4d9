"""The project's own PPO: learning signal, checkpoint/resume, cancellation, entry point."""

from __future__ import annotations

import os
from statistics import fmean

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch

from training.tiny import save_tiny
from training.trainers import Hooks, from_dict, run_training
from training.trainers.common import directory_digest
from training.trainers.ppo import PPOTrainer, RunningMoments, gae, whiten
from training.trainers.rewards import LengthScorer

torch.set_num_threads(1)  # tiny models: one thread is as fast and robust on a shared machine

pytestmark = [
    pytest.mark.training,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

PROMPTS = [f"Question {i}: is it safe?" for i in range(16)]
TOY = {
    "batch_size": 16,
    "learning_rate": 3e-3,
    "value_learning_rate": 3e-3,
    "lr_scheduler_type": "constant",
    "max_completion_length": 8,
    "kl_coef": 0.01,
    "save_steps": 0,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(save_tiny(tmp_path_factory.mktemp("ppo") / "base", seed=0))


def trainer(base, checkpoint_dir, hooks=None, **overrides) -> PPOTrainer:
    return PPOTrainer(
        from_dict("ppo", {**TOY, **overrides}),
        policy_path=base,
        prompts=PROMPTS,
        scorer=LengthScorer(8),  # toy reward: completions of ~8 characters (learn to stop early)
        checkpoint_dir=checkpoint_dir,
        hooks=hooks,
    )


def test_gae_and_whitening():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the 5.0 lies past the end: ignored
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert advantages.tolist() == [[1.0, 1.0, 1.0, 0.0]] and torch.equal(advantages, returns)
    white = whiten(torch.tensor([[1.0, 2.0, 3.0, 9.0]]), mask)
    assert white[0, 3] == 0 and abs(white[0, :3].mean().item()) < 1e-6

    moments = RunningMoments()
    moments.update(torch.tensor([1.0, 3.0]))
    moments.update(torch.tensor([5.0, 7.0]))
    assert moments.mean == pytest.approx(4.0) and moments.var == pytest.approx(5.0)


def test_mean_reward_rises_on_toy_reward(base, tmp_path):
    torch.manual_seed(0)
    steps: list[int] = []
    hooks = Hooks(on_metrics=lambda step, *_: steps.append(step))
    outcome = trainer(base, tmp_path, hooks, max_steps=30).train()
    rewards = [h["reward"] for h in outcome.history]
    assert steps == list(range(1, 31)) and not outcome.cancelled
    assert fmean(rewards[-5:]) > fmean(rewards[:5]) + 0.2, rewards
    last = outcome.history[-1]
    assert {"kl", "entropy", "loss/policy", "loss/value", "clipfrac", "reward_normalized"} <= set(
        last
    )


def test_cancel_checkpoint_and_resume(base, tmp_path):
    calls: list[int] = []
    cancel = Hooks(
        on_metrics=lambda step, *_: calls.append(step), should_cancel=lambda: len(calls) >= 3
    )
    first = trainer(base, tmp_path, cancel, max_steps=5, save_steps=2)
    outcome = first.train()
    assert outcome.cancelled and outcome.global_step == 3 and calls == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]

    resumed: list[int] = []
    hooks = Hooks(on_metrics=lambda step, *_: resumed.append(step))
    second = trainer(base, tmp_path, hooks, max_steps=5, save_steps=2)
    assert second.step == 3
    for ours, theirs in zip(first.policy.parameters(), second.policy.parameters(), strict=True):
        assert torch.equal(ours.cpu(), theirs.cpu())
    assert second.reward_stats == first.reward_stats
    outcome = second.train()
    assert resumed == [4, 5] and outcome.global_step == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-4"]


def test_ppo_entry_point_with_verifiers(tmp_path):
    out = tmp_path / "ppo"
    result = run_training(
        "ppo",
        {
            **TOY,
            "batch_size": 8,
            "max_steps": 3,
            "eval_prompts": 4,
            "num_samples": 2,
            "rewards": [{"type": "length", "target": 8}, {"type": "regex", "pattern": "safe"}],
        },
        {"base_model": "builtin:tiny", "rows": [{"prompt": p} for p in PROMPTS]},
        out,
    )
    assert result.global_step == 3 and not result.cancelled
    assert (result.sha256, result.size_bytes) == directory_digest(out)
    assert (out / "config.json").exists() and not (tmp_path / "ppo.work").exists()
    assert set(result.eval["reward"]["objective"]) == {"policy", "reference"}
    assert len(result.eval["samples"]) == 2 and "kl_to_reference" in result.eval
