"""Group-relative policy optimisation (TRL GRPOTrainer) with combinable weighted rewards."""

from __future__ import annotations

import os
import shutil
from typing import Any

from datasets import Dataset

from models_registry import adapters
from training.trainers.common import (
    RunContext,
    Scorer,
    Text,
    TrainingResult,
    fitting_prompts,
    load_causal_lm,
    load_tokenizer,
    prompt_budget,
    split_rows,
    trl_arguments,
)
from training.trainers.config import GRPOConfig
from training.trainers.peft import lora_config, quantization


class GRPOReward:
    """Adapts a :data:`Scorer` to TRL's reward-function signature; ``name`` labels its metrics.

    TRL hands reward functions the dataset's raw prompts (text or chat messages), so a wrapped
    :class:`~training.trainers.reward.RewardScorer` formats them exactly as in its training,
    unlike TRL's built-in model-reward path (no EOS, no special tokens).
    """

    def __init__(self, name: str, scorer: Scorer) -> None:
        self.__name__ = name
        self.scorer = scorer

    def __call__(self, prompts: list[Text], completions: list, **kwargs) -> list[float]:
        return self.scorer(prompts, completions)


def prompt_dataset(prompts: list[Text]) -> Dataset:
    return Dataset.from_list([{"prompt": p} for p in prompts])


def vllm_arguments(config: GRPOConfig) -> dict[str, Any]:
    """TRL's vLLM keywords: colocated engine (sleeping between generations) or a server."""
    if not config.use_vllm:
        return {}
    if config.vllm_mode == "server":
        return {"use_vllm": True, "vllm_mode": "server",
                "vllm_server_base_url": config.vllm_server_base_url}  # fmt: skip
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization,
        "vllm_enable_sleep_mode": True,
    }


def run(config: GRPOConfig, ctx: RunContext) -> TrainingResult:
    """GRPO on ``data['rows']`` prompts, rewarded by the config's ``rewards`` spec."""
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    from training.trainers.evaluation import evaluate_run_policy, reward_model_scorers
    from training.trainers.rewards import build_rewards, combine, needed_reward_models
    from training.trainers.runner import ProgressCallback, callbacks, eval_dataset_for, run_trainer

    base = ctx.base_model_path()
    if config.beta and config.peft == "none" and adapters.is_adapter(base):
        # TRL rebuilds the KL reference from the model's path: give it the merged weights
        merged = ctx.work_dir / "base-merged"
        if not merged.exists():  # built privately, then renamed (every torchrun rank may build)
            staging = adapters.write_merged(base, merged.with_name(f".{merged.name}.{os.getpid()}"))
            try:
                os.replace(staging, merged)
            except OSError:
                shutil.rmtree(staging)
        base = str(merged)
    tokenizer = load_tokenizer(base)
    model = load_causal_lm(base, trainable=True, **quantization(config))
    needed = needed_reward_models(config.rewards, ctx.reward_models)
    scorers = {name: s for name, s in reward_model_scorers(ctx).items() if name in needed}
    rewards = build_rewards(config.rewards, scorers)
    train_rows, eval_rows = split_rows(
        ctx.data.get("rows", []), ctx.data.get("eval_rows"), config.eval_fraction, config.seed
    )
    budget = prompt_budget(config, model.config)
    prompts = fitting_prompts(tokenizer, train_rows, budget)
    args = TRLGRPOConfig(
        **trl_arguments(config, ctx.checkpoint_dir, train_rows=len(prompts)),
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        num_iterations=config.num_iterations,
        loss_type=config.loss_type,
        reward_weights=[r.weight for r in rewards],
        scale_rewards=config.scale_rewards,
        mask_truncated_completions=config.mask_truncated_completions,
        steps_per_generation=config.steps_per_generation,
        top_p=config.top_p,
        top_k=config.top_k,
        **vllm_arguments(config),
    )
    progress = ProgressCallback(ctx.hooks)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[GRPOReward(r.name, r.scorer) for r in rewards],
        args=args,
        train_dataset=prompt_dataset(prompts),
        eval_dataset=eval_dataset_for(
            config,
            eval_rows,
            lambda rows: prompt_dataset(fitting_prompts(tokenizer, rows, budget)),
        ),
        processing_class=tokenizer,
        callbacks=callbacks(config, progress),
        peft_config=lora_config(config, model, head="causal_lm", base=base),
    )
    return run_trainer(
        "grpo",
        trainer,
        ctx,
        progress,
        lambda path: evaluate_run_policy(
            config,
            ctx,
            path,
            [row["prompt"] for row in eval_rows],
            {"objective": combine(rewards), **scorers},
        ),
    )
