"""Reward models: Bradley-Terry training (TRL RewardTrainer), scoring, held-out evaluation.

Training and scoring share one encoder, :func:`encode_for_reward`: the rendered prompt plus the
completion, tokenised, with EOS appended unless the tokenizer already ended on it. Scoring text
any other way (e.g. without EOS) can flip the sign of rewards even at 100 % eval accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from annotation.vocabulary import names_no_response
from training.trainers.common import (
    Row,
    RunContext,
    Text,
    TrainingResult,
    completion_text,
    default_device,
    load_sequence_classifier,
    load_tokenizer,
    max_positions,
    render_prompt,
    sequence_limit,
    split_rows,
    trl_arguments,
)
from training.trainers.config import RewardConfig
from training.trainers.peft import lora_config, quantization


def encode_for_reward(tokenizer, prompt: Text, completion: Text) -> list[int]:
    """Token ids a reward model sees for one (prompt, completion): the training format."""
    text = render_prompt(tokenizer, prompt) + completion_text(completion)
    ids = list(tokenizer(text)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


class RewardScorer:
    """Scores (prompt, completion) pairs with a saved reward model, exactly as it was trained.

    Usable anywhere a :data:`~training.trainers.common.Scorer` is expected (GRPO, PPO, eval).
    Inputs longer than the training ``max_length`` keep their last tokens (EOS stays).
    """

    def __init__(self, model_dir: str | Path, *, batch_size: int = 16, device: str | None = None):
        self.model_dir = str(model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.device = device or default_device()
        self.model = load_sequence_classifier(self.model_dir, self.tokenizer).to(self.device).eval()
        self.batch_size = batch_size
        limits = (_trained_max_length(Path(model_dir)), max_positions(self.model.config))
        self.max_length = min((limit for limit in limits if limit), default=2048)

    @torch.inference_mode()
    def __call__(self, prompts: Sequence[Text], completions: Sequence[Text]) -> list[float]:
        encoded = [
            encode_for_reward(self.tokenizer, p, c)[-self.max_length :]
            for p, c in zip(prompts, completions, strict=True)
        ]
        scores: list[float] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch])
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
            logits = self.model(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits
            scores.extend(logits[:, 0].float().tolist())
        return scores


def score(
    model_dir: str | Path,
    prompts: Sequence[Text],
    completions: Sequence[Text],
) -> list[float]:
    """One-off scoring with the reward model saved at ``model_dir``."""
    return RewardScorer(model_dir)(prompts, completions)


def _trained_max_length(model_dir: Path) -> int | None:
    info = model_dir / "training_run.json"
    return json.loads(info.read_text())["config"]["max_length"] if info.exists() else None


def preference_dataset(tokenizer, rows: list[Row], max_length: int) -> Dataset:
    """Pre-tokenised ``chosen_ids``/``rejected_ids`` (+ ``margin``); over-long pairs are dropped."""
    with_margin = any(row.get("margin") is not None for row in rows)
    records = []
    for row in rows:
        prompt = row.get("prompt", "")
        record: dict[str, Any] = {
            "chosen_ids": encode_for_reward(tokenizer, prompt, row["chosen"]),
            "rejected_ids": encode_for_reward(tokenizer, prompt, row["rejected"]),
        }
        if max(len(record["chosen_ids"]), len(record["rejected_ids"])) > max_length:
            continue
        if with_margin:
            record["margin"] = float(row.get("margin") or 0.0)
        records.append(record)
    if not records:
        raise ValueError(f"No preference pair fits max_length={max_length} tokens.")
    return Dataset.from_list(records)


def principle_keys(row: Row) -> list[str]:
    """Principles with a verdict on this row (``principles``: keys, or ``{key: verdict}``)."""
    principles = row.get("principles") or []
    if isinstance(principles, dict):
        return [key for key, verdict in principles.items() if not names_no_response(verdict)]
    return list(principles)


def evaluate_reward_model(model_dir: str | Path, rows: list[Row]) -> dict[str, Any]:
    """Held-out accuracy (chosen scored above rejected) overall and per principle with a verdict."""
    if not rows:
        return {}
    scorer = RewardScorer(model_dir)
    prompts = [row.get("prompt", "") for row in rows]
    chosen = scorer(prompts, [row["chosen"] for row in rows])
    rejected = scorer(prompts, [row["rejected"] for row in rows])
    correct = [c > r for c, r in zip(chosen, rejected, strict=True)]
    per_principle: dict[str, list[bool]] = {}
    for row, ok in zip(rows, correct, strict=True):
        for key in principle_keys(row):
            per_principle.setdefault(key, []).append(ok)
    return {
        "accuracy": sum(correct) / len(correct),
        "n": len(correct),
        "mean_margin": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(correct),
        "per_principle": {
            key: {"accuracy": sum(oks) / len(oks), "n": len(oks)}
            for key, oks in sorted(per_principle.items())
        },
    }


def run(config: RewardConfig, ctx: RunContext) -> TrainingResult:
    """Train a reward model on ``data['rows']`` (prompt/chosen/rejected[/margin/principles])."""
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from training.trainers.runner import ProgressCallback, callbacks, eval_dataset_for, run_trainer

    base = ctx.base_model_path(head="reward")
    tokenizer = load_tokenizer(base)
    model = load_sequence_classifier(base, tokenizer, trainable=True, **quantization(config))
    train_rows, eval_rows = split_rows(
        ctx.data.get("rows", []), ctx.data.get("eval_rows"), config.eval_fraction, config.seed
    )
    max_length = sequence_limit(config, model.config)
    args = TRLRewardConfig(
        **trl_arguments(config, ctx.checkpoint_dir, train_rows=len(train_rows)),
        max_length=max_length,
        center_rewards_coefficient=config.center_rewards_coefficient,
    )
    progress = ProgressCallback(ctx.hooks)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=preference_dataset(tokenizer, train_rows, max_length),
        eval_dataset=eval_dataset_for(
            config, eval_rows, lambda rows: preference_dataset(tokenizer, rows, max_length)
        ),
        processing_class=tokenizer,
        callbacks=callbacks(config, progress),
        peft_config=lora_config(config, model, head="reward", base=base),
    )
    return run_trainer(
        "reward", trainer, ctx, progress, lambda path: evaluate_reward_model(path, eval_rows)
    )
