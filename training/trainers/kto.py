"""Kahneman-Tversky optimisation (TRL KTOTrainer) on unpaired desirable/undesirable completions."""

from __future__ import annotations

from datasets import Dataset

from training.trainers.common import (
    Row,
    RunContext,
    TrainingResult,
    completion_text,
    load_causal_lm,
    load_tokenizer,
    render_prompt,
    sequence_limit,
    split_rows,
    trl_arguments,
)
from training.trainers.config import KTOConfig
from training.trainers.peft import lora_config, quantization


def kto_dataset(tokenizer, rows: list[Row]) -> Dataset:
    """Text ``prompt``/``completion`` and a boolean ``label`` (True = desirable)."""
    return Dataset.from_list(
        [
            {
                "prompt": render_prompt(tokenizer, row.get("prompt", "")),
                "completion": completion_text(row["completion"]),
                "label": bool(row["label"]),
            }
            for row in rows
        ]
    )


def check_labels(rows: list[Row]) -> None:
    """KTO learns from the contrast: the training rows need both labels."""
    labels = {bool(row["label"]) for row in rows}
    if labels != {True, False}:
        only = "desirable" if labels == {True} else "undesirable"
        raise ValueError(f"KTO needs desirable and undesirable rows; these are all {only}.")


def run(config: KTOConfig, ctx: RunContext) -> TrainingResult:
    """Train on ``data['rows']`` ``{prompt, completion, label}`` against ``data['reference_model']``
    or the base (loaded from a saved directory, as for DPO; a LoRA run without a separate
    reference uses its base, the adapter disabled)."""
    from trl import KTOConfig as TRLKTOConfig
    from trl import KTOTrainer

    from training.trainers.evaluation import preference_evaluation
    from training.trainers.runner import ProgressCallback, callbacks, eval_dataset_for, run_trainer

    base = ctx.base_model_path()
    tokenizer = load_tokenizer(base)
    train_rows, eval_rows = split_rows(
        ctx.data.get("rows", []), ctx.data.get("eval_rows"), config.eval_fraction, config.seed
    )
    check_labels(train_rows)
    model = load_causal_lm(base, trainable=True, **quantization(config))
    peft_config = lora_config(config, model, head="causal_lm", base=base)
    reference = ctx.data.get("reference_model")
    args = TRLKTOConfig(
        **trl_arguments(config, ctx.checkpoint_dir, train_rows=len(train_rows)),
        max_length=sequence_limit(config, model.config),
        beta=config.beta,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
    )
    progress = ProgressCallback(ctx.hooks)
    trainer = KTOTrainer(
        model=model,
        # With an adapter and no other reference, TRL's reference is the adapter disabled.
        ref_model=None if peft_config and not reference else load_causal_lm(reference or base),
        args=args,
        train_dataset=kto_dataset(tokenizer, train_rows),
        eval_dataset=eval_dataset_for(config, eval_rows, lambda rows: kto_dataset(tokenizer, rows)),
        processing_class=tokenizer,
        callbacks=callbacks(config, progress),
        peft_config=peft_config,
    )
    return run_trainer(
        "kto",
        trainer,
        ctx,
        progress,
        preference_evaluation(config, ctx, eval_rows),
    )
