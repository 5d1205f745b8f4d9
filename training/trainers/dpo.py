"""Direct preference optimisation (TRL DPOTrainer), including robust DPO for noisy labels."""

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
from training.trainers.config import DPOConfig
from training.trainers.peft import lora_config, quantization


def dpo_dataset(tokenizer, rows: list[Row]) -> Dataset:
    """Text ``prompt``/``chosen``/``rejected`` (chat prompts rendered with the template)."""
    return Dataset.from_list(
        [
            {
                "prompt": render_prompt(tokenizer, row.get("prompt", "")),
                "chosen": completion_text(row["chosen"]),
                "rejected": completion_text(row["rejected"]),
            }
            for row in rows
        ]
    )


def run(config: DPOConfig, ctx: RunContext) -> TrainingResult:
    """Train on ``data['rows']`` preference pairs against ``data['reference_model']`` or the base.

    The reference is loaded from a saved directory (never left for TRL to reload from the model's
    ``_name_or_path``, which is empty for models built from a config); a LoRA run without a
    separate reference uses its base (the adapter disabled) and loads no second model.
    """
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    from training.trainers.evaluation import preference_evaluation
    from training.trainers.runner import ProgressCallback, callbacks, eval_dataset_for, run_trainer

    base = ctx.base_model_path()
    tokenizer = load_tokenizer(base)
    train_rows, eval_rows = split_rows(
        ctx.data.get("rows", []), ctx.data.get("eval_rows"), config.eval_fraction, config.seed
    )
    model = load_causal_lm(base, trainable=True, **quantization(config))
    peft_config = lora_config(config, model, head="causal_lm", base=base)
    reference = ctx.data.get("reference_model")
    args = TRLDPOConfig(
        **trl_arguments(config, ctx.checkpoint_dir, train_rows=len(train_rows)),
        max_length=sequence_limit(config, model.config),
        loss_type=list(config.loss_type),
        loss_weights=config.loss_weights,
        beta=config.beta,
        label_smoothing=config.label_smoothing,
        padding_free=config.padding_free,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
    )
    progress = ProgressCallback(ctx.hooks)
    trainer = DPOTrainer(
        model=model,
        # With an adapter and no other reference, TRL's reference is the adapter disabled.
        ref_model=None if peft_config and not reference else load_causal_lm(reference or base),
        args=args,
        train_dataset=dpo_dataset(tokenizer, train_rows),
        eval_dataset=eval_dataset_for(config, eval_rows, lambda rows: dpo_dataset(tokenizer, rows)),
        processing_class=tokenizer,
        callbacks=callbacks(config, progress),
        peft_config=peft_config,
    )
    return run_trainer(
        "dpo",
        trainer,
        ctx,
        progress,
        preference_evaluation(config, ctx, eval_rows),
    )
