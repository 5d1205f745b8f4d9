"""The loop shared by the TRL-backed kinds: progress callback, resume, artifact, evaluation."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from training.trainers.common import (
    Hooks,
    RunContext,
    TrainingResult,
    guarded_evaluation,
    last_checkpoint,
    summarize_logs,
    write_artifact,
    write_run_info,
)


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


def run_trainer(
    kind: str,
    trainer: Trainer,
    ctx: RunContext,
    progress: ProgressCallback,
    evaluate: Callable[[Path], dict[str, Any]],
) -> TrainingResult:
    """Train (resuming from the newest checkpoint), publish the artifact, then evaluate it."""
    trainer.remove_callback(PrinterCallback)  # metrics go to the hooks, not stdout
    output = trainer.train(resume_from_checkpoint=last_checkpoint(ctx.checkpoint_dir))
    metrics = {**summarize_logs(trainer.state.log_history), "world_size": trainer.args.world_size}
    if progress.cancelled:
        return TrainingResult(metrics=metrics, global_step=output.global_step, cancelled=True)

    def save(directory: Path) -> None:
        trainer.save_model(str(directory))
        if trainer.is_world_process_zero():
            write_run_info(directory, kind, ctx)

    main = trainer.is_world_process_zero()
    artifact = write_artifact(
        ctx.output_dir, save, main_process=main, barrier=trainer.accelerator.wait_for_everyone
    )
    if artifact is None:  # not the main process: rank 0 reports
        return TrainingResult(metrics=metrics, global_step=output.global_step)
    report = guarded_evaluation(evaluate, artifact.path)
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    return TrainingResult(
        metrics=metrics,
        artifact_path=artifact.path,
        sha256=artifact.sha256,
        size_bytes=artifact.size_bytes,
        eval=report,
        global_step=output.global_step,
    )
