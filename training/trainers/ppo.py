"""PPO for language models, with the "PPO-max" choices of Zheng et al. (2023), *Secrets of RLHF
in Large Language Models Part I: PPO* (TRL removed its PPOTrainer in 1.13; this is our own).

Models: the **policy** (trained), a frozen **reference** (the starting policy), a **reward
scorer** (any ``(prompts, completions) -> scores`` callable, e.g. a reward model scoring exactly
as trained) and a **value model**: a ``*ForSequenceClassification`` model whose scalar ``score``
head is applied to every hidden state, giving one value per token. PPO-max initialises it from
the reward model (``value_init="reward_model"``, same tokenizer required) or from the policy.

One step:

1. *Rollout* - sample one completion per prompt (tokens after the first EOS are masked).
2. *Score* - reward the completions; normalise by running mean/std and clip to
   ``[-reward_clip, reward_clip]`` (PPO-max: reward normalisation and clipping).
3. *Per-token reward* - ``-kl_coef * (log pi - log pi_ref)`` on every token, plus the score on
   the last token (PPO-max: token-level KL penalty).
4. *GAE* - advantages and returns from the per-token values (``gamma``, ``lam``); advantages are
   whitened over the batch (PPO-max: advantage normalisation).
5. *Update* - ``ppo_epochs`` passes of ``num_mini_batches`` mini-batches: clipped policy loss,
   clipped value loss (PPO-max: value clipping), optional entropy bonus, global gradient-norm
   clipping per model.

With ``peft`` (LoRA / QLoRA) the policy is an adapter over its frozen base, and the reference is
that same model with the adapter disabled (no second copy) unless a reference is given. The
value model is still trained in full: it is discarded after the run and its values stay as
accurate as without PEFT, at the memory cost of a full model and its optimiser state.

Dropout is disabled in all models, so log-probs during the update match the rollout's.
Checkpoints (policy, value, optimiser, scheduler, reward statistics, RNG) are written every
``save_steps`` steps as ``checkpoint-N`` and a new trainer resumes from the newest one.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from training.trainers.common import (
    Hooks,
    RunContext,
    Scorer,
    Text,
    TrainingResult,
    default_device,
    finish_training,
    fitting_prompts,
    last_checkpoint,
    load_causal_lm,
    load_model_config,
    load_sequence_classifier,
    load_tokenizer,
    prompt_budget,
    render_prompt,
    resolve_device_settings,
    sequence_limit,
    split_rows,
)
from training.trainers.config import PPOConfig
from training.trainers.peft import lora_config, prepare_quantized, quantization
from training.trainers.sampling import (
    Rollout,
    VLLMSampler,
    entropy,
    position_ids,
    response_logits,
    sample,
    token_logprobs,
)

STATE_FILE = "ppo_state.pt"


@dataclass
class RunningMoments:
    """Running mean and variance of every reward seen (Chan et al.'s parallel update)."""

    mean: float = 0.0
    var: float = 1.0
    count: int = 0

    def update(self, values: torch.Tensor) -> None:
        n = values.numel()
        batch_mean, batch_var = values.mean().item(), values.var(unbiased=False).item()
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / max(self.var, 1e-8) ** 0.5


@dataclass
class PPOOutcome:
    global_step: int
    cancelled: bool
    history: list[dict[str, float]] = field(default_factory=list)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-variance over the masked entries; masked-out entries become 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + 1e-8) * mask


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens: (advantages, returns)."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages * mask, (advantages + values) * mask


def token_values(value_model, rollout: Rollout) -> torch.Tensor:
    """The value head on the hidden state before each completion token: (B, R)."""
    backbone = getattr(value_model, value_model.base_model_prefix)
    hidden = backbone(
        input_ids=rollout.input_ids,
        attention_mask=rollout.attention_mask,
        position_ids=position_ids(rollout.attention_mask),
    ).last_hidden_state
    return value_model.score(hidden[:, rollout.prompt_length - 1 : -1]).squeeze(-1).float()


def disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def _select(rollout: Rollout, index: torch.Tensor) -> Rollout:
    return Rollout(
        rollout.input_ids[index],
        rollout.attention_mask[index],
        rollout.prompt_length,
        rollout.response_mask[index],
        [rollout.completions[i] for i in index.tolist()],
    )


class PPOTrainer:
    """Runs PPO steps; see the module docstring for the algorithm."""

    def __init__(
        self,
        config: PPOConfig,
        *,
        policy_path: str,
        prompts: list[Text],
        scorer: Scorer,
        checkpoint_dir: str | Path,
        reference_path: str | None = None,
        value_path: str | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.config = config
        self.prompts, self.scorer = prompts, scorer
        self.checkpoint_dir = Path(checkpoint_dir)
        self.hooks = hooks or Hooks()
        self.device = torch.device(default_device())
        settings = resolve_device_settings(config)
        self.autocast_dtype = torch.bfloat16 if settings["bf16"] else None
        torch.manual_seed(config.seed)

        resume = last_checkpoint(self.checkpoint_dir, marker=STATE_FILE)
        self.tokenizer = load_tokenizer(policy_path)
        self.policy = self._load_policy(policy_path, resume, settings["activation_checkpointing"])
        # LoRA without a separate reference: the reference is the policy with its adapter off.
        self.reference = (
            None
            if config.peft != "none" and not reference_path
            else load_causal_lm(reference_path or policy_path).requires_grad_(False)
        )
        value_source = f"{resume}/value" if resume else value_path or policy_path
        self.value_model = load_sequence_classifier(value_source, self.tokenizer, trainable=True)
        if not hasattr(self.value_model, "score"):
            raise ValueError(f"{type(self.value_model).__name__} has no 'score' head for values.")
        for model in (self.policy, self.reference, self.value_model):
            if model is not None:
                disable_dropout(model)
                if not getattr(model, "is_loaded_in_4bit", False):  # 4-bit: placed when loaded
                    model.to(self.device)
        if settings["activation_checkpointing"]:
            self.policy.gradient_checkpointing_enable()
            self.value_model.gradient_checkpointing_enable()
        if self.reference is not None:
            self.reference.eval()
        self.prompt_texts = [render_prompt(self.tokenizer, p) for p in prompts]
        self.max_prompt_length = prompt_budget(config, self.policy.config)
        self.vllm = (
            VLLMSampler(
                f"{resume}/policy" if resume else policy_path,
                gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                max_model_len=sequence_limit(config, self.policy.config),
                seed=config.seed,
            )
            if config.use_vllm
            else None
        )

        from transformers import get_scheduler

        self.optimizer = torch.optim.AdamW(
            [
                {
                    "params": [p for p in self.policy.parameters() if p.requires_grad],
                    "lr": config.learning_rate,
                },
                {"params": list(self.value_model.parameters()), "lr": config.value_learning_rate},
            ],
            weight_decay=config.weight_decay,
        )
        updates_per_step = config.ppo_epochs * config.num_mini_batches
        warmup_steps = config.warmup_steps
        if config.warmup_ratio is not None:
            warmup_steps = round(config.warmup_ratio * config.max_steps)
        self.scheduler = get_scheduler(
            config.lr_scheduler_type,
            self.optimizer,
            num_warmup_steps=warmup_steps * updates_per_step,
            num_training_steps=config.max_steps * updates_per_step,
        )
        self.reward_stats = RunningMoments()
        self.step = 0
        if resume:
            self._load_state(Path(resume))

    def _load_policy(self, policy_path: str, resume: str | None, checkpointing: bool):
        """The trained policy: full weights, or (``peft``) a LoRA adapter over the frozen base,
        resumed from the checkpoint's adapter when there is one."""
        config = self.config
        if config.peft == "none":
            return load_causal_lm(f"{resume}/policy" if resume else policy_path, trainable=True)
        from peft import PeftModel, get_peft_model

        base = load_causal_lm(policy_path, trainable=True, **quantization(config))
        base = prepare_quantized(base, config, checkpointing)
        if resume:
            return PeftModel.from_pretrained(base, f"{resume}/policy", is_trainable=True)
        return get_peft_model(base, lora_config(config, base, head="causal_lm", base=policy_path))

    def _reference_logits(self, rollout: Rollout) -> torch.Tensor:
        """The reference's logits: its own model, or the policy with the adapter disabled."""
        if self.reference is not None:
            return response_logits(self.reference, rollout, self.config.temperature)
        with self.policy.disable_adapter():
            return response_logits(self.policy, rollout, self.config.temperature)

    # --- one step ---------------------------------------------------------------------------

    def _batch_prompts(self, step: int) -> list[int]:
        """Prompt indices for ``step``: seeded epoch-wise shuffles, so resume sees the same data."""
        size, n = self.config.batch_size, len(self.prompts)
        indices = []
        for position in range(step * size, (step + 1) * size):
            epoch, offset = divmod(position, n)
            order = list(range(n))
            random.Random(self.config.seed * 100_003 + epoch).shuffle(order)
            indices.append(order[offset])
        return indices

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def _rollout(self, indices: list[int]):
        config = self.config
        rollout = (self.vllm.sample if self.vllm else sample)(
            self.policy,
            self.tokenizer,
            [self.prompt_texts[i] for i in indices],
            max_new_tokens=config.max_completion_length,
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            max_prompt_length=self.max_prompt_length,
        )
        mask, tokens = rollout.response_mask, rollout.response_ids
        scores = torch.tensor(
            self.scorer([self.prompts[i] for i in indices], rollout.completions),
            dtype=torch.float,
            device=self.device,
        )
        if config.normalize_rewards:
            self.reward_stats.update(scores)
            normalized = self.reward_stats.normalize(scores)
        else:
            normalized = scores
        normalized = normalized.clamp(-config.reward_clip, config.reward_clip)

        with self._autocast():
            old_logprobs = token_logprobs(
                response_logits(self.policy, rollout, config.temperature), tokens
            )
            ref_logprobs = token_logprobs(self._reference_logits(rollout), tokens)
            old_values = token_values(self.value_model, rollout)
        kl = (old_logprobs - ref_logprobs) * mask
        rewards = -config.kl_coef * kl
        last = (mask.sum(dim=1).long() - 1).clamp(min=0)
        rewards[torch.arange(len(indices), device=self.device), last] += normalized
        advantages, returns = gae(rewards, old_values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = whiten(advantages, mask)
        stats = {
            "reward": scores.mean().item(),
            "reward_std": scores.std(unbiased=False).item(),
            "reward_normalized": normalized.mean().item(),
            "kl": kl.sum(dim=1).mean().item(),
            "completion_length": mask.sum(dim=1).mean().item(),
            "value_mean": masked_mean(old_values, mask).item(),
            "return_mean": masked_mean(returns, mask).item(),
        }
        batch = {
            "old_logprobs": old_logprobs,
            "old_values": old_values,
            "advantages": advantages,
            "returns": returns,
        }
        return rollout, batch, stats

    def _update(self, rollout: Rollout, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        config = self.config
        size = len(rollout.completions) // config.num_mini_batches
        totals: dict[str, float] = {}
        self.policy.train()
        self.value_model.train()
        for _ in range(config.ppo_epochs):
            order = torch.randperm(len(rollout.completions), device=self.device)
            for start in range(0, len(order), size):
                index = order[start : start + size]
                mini = _select(rollout, index)
                mask, tokens = mini.response_mask, mini.response_ids
                old_logprobs, old_values = batch["old_logprobs"][index], batch["old_values"][index]
                advantages, returns = batch["advantages"][index], batch["returns"][index]
                with self._autocast():
                    logits = response_logits(self.policy, mini, config.temperature)
                    values = token_values(self.value_model, mini)
                logprobs = token_logprobs(logits, tokens)

                log_ratio = logprobs - old_logprobs
                ratio = log_ratio.exp()
                clipped = ratio.clamp(1 - config.cliprange, 1 + config.cliprange)
                policy_loss = masked_mean(
                    torch.max(-advantages * ratio, -advantages * clipped), mask
                )
                values_clipped = old_values + (values - old_values).clamp(
                    -config.cliprange_value, config.cliprange_value
                )
                value_loss = 0.5 * masked_mean(
                    torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask
                )
                token_entropy = masked_mean(entropy(logits), mask)
                loss = policy_loss + value_loss - config.entropy_coef * token_entropy

                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), config.max_grad_norm)
                nn.utils.clip_grad_norm_(self.value_model.parameters(), config.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()

                with torch.no_grad():
                    step_stats = {
                        "loss/policy": policy_loss.item(),
                        "loss/value": value_loss.item(),
                        "entropy": token_entropy.item(),
                        "clipfrac": masked_mean(
                            ((ratio - 1).abs() > config.cliprange).float(), mask
                        ).item(),
                        "approx_kl": masked_mean(0.5 * log_ratio**2, mask).item(),
                    }
                for key, value in step_stats.items():
                    totals[key] = totals.get(key, 0.0) + value
        updates = config.ppo_epochs * config.num_mini_batches
        return {key: value / updates for key, value in totals.items()}

    def train(self) -> PPOOutcome:
        """Run until ``max_steps`` or cancellation; returns the per-step metric history."""
        config = self.config
        outcome = PPOOutcome(global_step=self.step, cancelled=False)
        while self.step < config.max_steps:
            rollout, batch, stats = self._rollout(self._batch_prompts(self.step))
            stats.update(self._update(rollout, batch))
            stats["learning_rate"] = self.scheduler.get_last_lr()[0]
            self.step += 1
            outcome.history.append(stats)
            if self.step % config.logging_steps == 0 or self.step == config.max_steps:
                self.hooks.on_metrics(self.step, config.max_steps, dict(stats))
            cancelled = bool(self.hooks.should_cancel())
            due = cancelled or (config.save_steps and self.step % config.save_steps == 0)
            if config.save_steps and due and self.step < config.max_steps:
                self.save_checkpoint()
            if cancelled:
                outcome.cancelled = True
                break
        outcome.global_step = self.step
        return outcome

    # --- saving and resuming ----------------------------------------------------------------

    def save_policy(self, directory: Path) -> None:
        self.policy.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint-<step>`` atomically and keep the newest ``save_total_limit``."""
        final = self.checkpoint_dir / f"checkpoint-{self.step}"
        staging = self.checkpoint_dir / f".checkpoint-{self.step}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        self.save_policy(staging / "policy")
        self.value_model.save_pretrained(staging / "value")
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "reward_stats": self.reward_stats.__dict__,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(state, staging / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        kept = sorted(
            (p for p in self.checkpoint_dir.glob("checkpoint-*") if (p / STATE_FILE).exists()),
            key=lambda p: int(p.name.split("-")[1]),
        )
        for old in kept[: -self.config.save_total_limit]:
            shutil.rmtree(old)
        return final

    def _load_state(self, checkpoint: Path) -> None:
        state = torch.load(checkpoint / STATE_FILE, weights_only=False, map_location="cpu")
        self.step = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.reward_stats = RunningMoments(**state["reward_stats"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def run(config: PPOConfig, ctx: RunContext) -> TrainingResult:
    """PPO on ``data['rows']`` prompts with the ``rewards`` spec; artifact = the final policy."""
    from training.trainers.evaluation import evaluate_run_policy, reward_model_scorers
    from training.trainers.rewards import build_rewards, combine, needed_reward_models

    base = ctx.base_model_path()
    tokenizer = load_tokenizer(base)
    needed = needed_reward_models(config.rewards, ctx.reward_models)
    scorers = {name: s for name, s in reward_model_scorers(ctx).items() if name in needed}
    objective = combine(build_rewards(config.rewards, scorers))
    value_path = None
    if config.value_init == "reward_model":
        if len(needed) != 1:
            raise ValueError("value_init='reward_model' needs exactly one reward model in rewards.")
        value_path = ctx.reward_models[needed[0]]
        if load_tokenizer(value_path).get_vocab() != tokenizer.get_vocab():
            raise ValueError("value_init='reward_model' needs the reward model to share the "
                             "policy's tokenizer.")  # fmt: skip

    train_rows, eval_rows = split_rows(
        ctx.data.get("rows", []), ctx.data.get("eval_rows"), config.eval_fraction, config.seed
    )
    budget = prompt_budget(config, load_model_config(base))
    trainer = PPOTrainer(
        config,
        policy_path=base,
        prompts=fitting_prompts(tokenizer, train_rows, budget),
        scorer=objective,
        checkpoint_dir=ctx.checkpoint_dir,
        reference_path=ctx.data.get("reference_model"),
        value_path=value_path,
        hooks=ctx.hooks,
    )
    outcome = trainer.train()
    return finish_training(
        "ppo",
        ctx,
        log_history=outcome.history,
        world_size=1,
        global_step=outcome.global_step,
        cancelled=outcome.cancelled,
        save=trainer.save_policy,
        evaluate=lambda path: evaluate_run_policy(
            config,
            ctx,
            path,
            [row["prompt"] for row in eval_rows],
            {"objective": objective, **scorers},
        ),
    )
