"""Odds-ratio preference optimisation (ORPO): SFT and preference in one loss, no reference model.

TRL 1.16 ships ORPO only in ``trl.experimental.orpo`` (unstable API); this module is the one
place that imports it.
"""

from __future__ import annotations

import warnings

from training.trainers.common import (
    RunContext,
    TrainingResult,
    load_causal_lm,
    load_tokenizer,
    sequence_limit,
    split_rows,
    trl_arguments,
)
from training.trainers.config import ORPOConfig
from training.trainers.dpo import dpo_dataset
from training.trainers.peft import lora_config, quantization


def run(config: ORPOConfig, ctx: RunContext) -> TrainingResult:
    """Train on ``data['rows']`` preference pairs (``prompt``/``chosen``/``rejected``)."""
    with warnings.catch_warnings():  # the API's instability is stated in this module's docstring
        warnings.filterwarnings("ignore", message=".*trl.experimental")
        from trl.experimental.orpo import ORPOConfig as TRLORPOConfig
        from trl.experimental.orpo import ORPOTrainer

    from training.trainers.evaluation import preference_evaluation
    from training.trainers.runner import ProgressCallback, callbacks, eval_dataset_for, run_trainer

    base = ctx.base_model_path()
    tokenizer = load_tokenizer(base)
    train_rows, eval_rows = split_rows(
        ctx.data.get("rows", []), ctx.data.get("eval_rows"), config.eval_fraction, config.seed
    )
    model = load_causal_lm(base, trainable=True, **quantization(config))
    max_length = sequence_limit(config, model.config)
    args = TRLORPOConfig(
        **trl_arguments(config, ctx.checkpoint_dir, train_rows=len(train_rows)),
        max_length=max_length,
        max_completion_length=min(config.max_completion_length, max_length),
        beta=config.beta,
    )
    progress = ProgressCallback(ctx.hooks)
    trainer = ORPOTrainer(
        model=model,
        args=args,
        train_dataset=dpo_dataset(tokenizer, train_rows),
        eval_dataset=eval_dataset_for(config, eval_rows, lambda rows: dpo_dataset(tokenizer, rows)),
        processing_class=tokenizer,
        callbacks=callbacks(config, progress),
        peft_config=lora_config(config, model, head="causal_lm", base=base),
    )
    return run_trainer(
        "orpo",
        trainer,
        ctx,
        progress,
        preference_evaluation(config, ctx, eval_rows),
    )
