"""Supervised fine-tuning on chat ``messages`` (TRL SFTTrainer)."""

from __future__ import annotations

import re

from datasets import Dataset

from training.trainers.common import (
    Row,
    RunContext,
    TrainingResult,
    load_causal_lm,
    load_tokenizer,
    prompt_of,
    sequence_limit,
    split_rows,
    trl_arguments,
)
from training.trainers.config import SFTConfig
from training.trainers.peft import lora_config, quantization

GENERATION_MARKER = re.compile(r"{%-?\s*generation\s*-?%}")


def assistant_only(config: SFTConfig, tokenizer) -> bool:
    """Whether to train on assistant tokens only: needs ``{% generation %}`` in the template."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError("SFT on 'messages' needs a tokenizer with a chat template.")
    marked = bool(GENERATION_MARKER.search(template))
    if config.assistant_only_loss and not marked:
        raise ValueError(
            "assistant_only_loss=True needs {% generation %} markers in the chat template; "
            "set it to None/False or use a template with markers (TRL ships *_training.jinja)."
        )
    return marked if config.assistant_only_loss is None else config.assistant_only_loss


def messages_dataset(rows: list[Row]) -> Dataset:
    return Dataset.from_list([{"messages": row["messages"]} for row in rows])


def run(config: SFTConfig, ctx: RunContext) -> TrainingResult:
    """Fine-tune the base model on ``data['rows']`` (each ``{"messages": [...]}``)."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from training.trainers.evaluation import evaluate_run_policy, reward_model_scorers
    from training.trainers.runner import ProgressCallback, callbacks, eval_dataset_for, run_trainer

    base = ctx.base_model_path()
    tokenizer = load_tokenizer(base)
    train_rows, eval_rows = split_rows(
        ctx.data.get("rows", []), ctx.data.get("eval_rows"), config.eval_fraction, config.seed
    )
    only_assistant = assistant_only(config, tokenizer)
    model = load_causal_lm(base, trainable=True, **quantization(config))
    args = TRLSFTConfig(
        **trl_arguments(config, ctx.checkpoint_dir, train_rows=len(train_rows)),
        max_length=sequence_limit(config, model.config),
        assistant_only_loss=only_assistant,
        packing=config.packing,
        padding_free=config.padding_free,
    )
    progress = ProgressCallback(ctx.hooks)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=messages_dataset(train_rows),
        eval_dataset=eval_dataset_for(config, eval_rows, messages_dataset),
        processing_class=tokenizer,
        callbacks=callbacks(config, progress),
        peft_config=lora_config(config, model, head="causal_lm", base=base),
    )
    result = run_trainer(
        "sft",
        trainer,
        ctx,
        progress,
        lambda path: evaluate_run_policy(
            config, ctx, path, [prompt_of(row) for row in eval_rows], reward_model_scorers(ctx)
        ),
    )
    result.metrics["assistant_only_loss"] = only_assistant
    return result
