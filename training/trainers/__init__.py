"""Django-free training layer: one entry point over reward / SFT / DPO / GRPO / PPO / KTO / ORPO.

``data`` (plain Python, JSON-serialisable):

* ``base_model``: a local path, a hub id (``HF_HUB_OFFLINE=1`` is respected) or ``"builtin:tiny"``;
* ``rows``: training rows -- reward/DPO ``{prompt, chosen, rejected, margin?, principles?}``;
  SFT ``{messages}``; GRPO/PPO ``{prompt}``; KTO ``{prompt, completion, label}``;
  ORPO as DPO. Prompts may be text or chat messages;
* ``eval_rows`` (optional): held-out rows; otherwise ``eval_fraction`` of ``rows`` is held out;
* ``reference_model`` (optional): DPO reference and evaluation baseline (default: the base);
* ``reward_models`` (optional): ``{name: path}`` of trained reward models, used by the GRPO/PPO
  ``rewards`` spec and to score policies in evaluation.

Importing this package is cheap; torch, transformers and TRL load when a run starts.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from training.trainers.common import Hooks, RunContext, TrainingResult
from training.trainers.config import (
    CONFIGS,
    KINDS,
    RunConfig,
    check_runtime,
    describe_fields,
    from_dict,
)

__all__ = [
    "CONFIGS",
    "KINDS",
    "Hooks",
    "RunConfig",
    "TrainingResult",
    "describe_fields",
    "from_dict",
    "run_training",
]


def run_training(
    kind: str,
    config: dict[str, Any],
    data: dict[str, Any],
    output_dir: str | Path,
    hooks: Hooks | None = None,
    *,
    work_dir: str | Path | None = None,
) -> TrainingResult:
    """Validate ``config``, train, write the artifact atomically to ``output_dir``, evaluate.

    ``work_dir`` (default ``<output_dir>.work``) keeps checkpoints; calling again with the same
    paths after a failure or cancellation resumes from the newest checkpoint. It is deleted
    after success. Under torchrun every rank calls this; only rank 0 gets the artifact and eval.
    """
    run_config = from_dict(kind, config, world_size=int(os.environ.get("WORLD_SIZE", "1")))
    import torch

    check_runtime(run_config, gpu=torch.cuda.is_available())
    output_dir = Path(output_dir)
    ctx = RunContext(
        config=run_config,
        data=data,
        output_dir=output_dir,
        work_dir=Path(work_dir) if work_dir else output_dir.with_name(f"{output_dir.name}.work"),
        hooks=hooks or Hooks(),
    )
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.set_seed(run_config.seed)
    return importlib.import_module(f"training.trainers.{kind}").run(run_config, ctx)
