"""The loop shared by the TRL-backed kinds: progress callback, resume, artifact, evaluation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback

from training.trainers.common import (
    Hooks,
    RunContext,
    TrainingResult,
    finish_training,
    last_checkpoint,
)
from training.trainers.config import RunConfig


class ProgressCallback(TrainerCallback):
    """Forwards metrics to ``hooks.on_metrics`` and stops training when ``hooks.should_cancel()``.

    Hooks run on the world's process zero only. In a multi-process run the cancel decision is
    broadcast from rank 0, so every rank stops after the same step (no collective hangs). A
    cancelled run also writes a checkpoint (when checkpointing is on) so it can be resumed; the
    last step writes none (transformers would), since the artifact is saved right after.
    """

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.cancelled = False

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.hooks.on_metrics(state.global_step, state.max_steps, dict(logs))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        cancel = state.is_world_process_zero and bool(self.hooks.should_cancel())
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([int(cancel)], device=args.device)
            dist.broadcast(flag, src=0)
            cancel = bool(flag.item())
        if state.global_step >= state.max_steps:
            control.should_save = False
        elif cancel:
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"


def callbacks(config: RunConfig, progress: ProgressCallback) -> list[TrainerCallback]:
    """The run's callbacks: progress and cancellation, then early stopping when configured."""
    if not config.early_stopping_patience:
        return [progress]
    return [progress, EarlyStoppingCallback(config.early_stopping_patience)]


def eval_dataset_for(config: RunConfig, rows: list, build: Callable[[list], Any]) -> Any:
    """``build(rows)`` (the held-out rows as a dataset) when the run evaluates while training."""
    if not config.eval_steps:
        return None
    if not rows:
        raise ValueError("eval_steps needs held-out rows; this run has none (eval_fraction).")
    return build(rows)


def run_trainer(
    kind: str,
    trainer: Trainer,
    ctx: RunContext,
    progress: ProgressCallback,
    evaluate: Callable[[Path], dict[str, Any]],
) -> TrainingResult:
    """Train (resuming from the newest checkpoint), publish the artifact, then evaluate it."""
    trainer.remove_callback(PrinterCallback)  # metrics go to the hooks, not stdout
    if ctx.config.attn_implementation != "auto":
        trainer.model.set_attn_implementation(ctx.config.attn_implementation)
    output = trainer.train(resume_from_checkpoint=last_checkpoint(ctx.checkpoint_dir))
    return finish_training(
        kind,
        ctx,
        log_history=trainer.state.log_history,
        world_size=trainer.args.world_size,
        global_step=output.global_step,
        cancelled=progress.cancelled,
        save=lambda directory: trainer.save_model(str(directory)),
        evaluate=evaluate,
        main_process=trainer.is_world_process_zero(),
        barrier=trainer.accelerator.wait_for_everyone,
    )
