"""Distributed strategies of a run (pure Python: no Django, no torch).

``ddp`` keeps a full replica per process; ``fsdp`` (FSDP2) and DeepSpeed ZeRO stage 2 / 3 shard
optimizer state and gradients (and parameters for fsdp and ZeRO-3) across the processes, with
optional CPU offload. From a run's config this module builds

* the ``TrainingArguments`` keywords (``fsdp`` + ``fsdp_config``, or ``deepspeed``) that the
  TRL trainers get (:func:`trainer_arguments`), and
* the launch record stored with the run and written into its launch directory
  (:func:`launch_config`): the strategy, the process count, the launcher command line, those
  keywords, and the equivalent ``accelerate launch --config_file`` configuration.

DeepSpeed values left ``"auto"`` are filled by transformers from the training arguments (batch
sizes, accumulation, clipping, precision, optimizer hyper-parameters), so one config per stage
fits every run. Activation checkpointing composes with each strategy: under FSDP it is FSDP's
own (``fsdp_config.activation_checkpointing``; transformers' would add a redundant all-gather),
otherwise transformers' ``activation_checkpointing`` argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.trainers.config import RunConfig

#: the strategies that need the torchrun launcher even with one process
SHARDED = ("fsdp", "deepspeed-zero2", "deepspeed-zero3")
#: why a sharded strategy is refused on a CPU worker. torch's FSDP2 itself runs on CPU (gloo),
#: but accelerate (1.16) applies its FSDP plugin only to GPU-like distributed types: on CPU the
#: run silently trains plain DDP. Its CPU path never initialises DeepSpeed's communication
#: either (ZeRO-3 then fails: "train_batch_size is not equal to micro_batch_per_gpu *
#: gradient_acc_step * world_size 8 != 4 * 1 * 1").
CPU_REFUSAL = (
    "strategy {strategy!r} needs a GPU worker: accelerate shards with FSDP and DeepSpeed only on "
    "GPUs (on CPU FSDP would silently train as DDP); use strategy 'ddp' on the cpu queue."
)
#: the transformer block is the FSDP wrapping unit; its class comes from the model's
#: ``_no_split_modules`` (transformers' fallback), so no architecture list is kept here
WRAP_POLICY = "TRANSFORMER_BASED_WRAP"


def uses_launcher(strategy: str, num_processes: int) -> bool:
    """True when the run must start under torchrun (several processes or a sharded strategy)."""
    return num_processes > 1 or strategy in SHARDED


def fsdp_config(config: RunConfig, activation_checkpointing: bool) -> dict[str, Any]:
    """``TrainingArguments.fsdp_config`` for FSDP2 with transformer-layer wrapping."""
    return {
        "version": 2,
        "auto_wrap_policy": WRAP_POLICY,
        "reshard_after_forward": True,
        "cpu_offload": config.offload_params,
        "activation_checkpointing": activation_checkpointing,
        "state_dict_type": "FULL_STATE_DICT",
        "cpu_ram_efficient_loading": False,
    }


def deepspeed_config(config: RunConfig) -> dict[str, Any]:
    """A DeepSpeed config for ZeRO stage 2 or 3, ``"auto"`` where transformers fills it in."""
    stage = 3 if config.strategy == "deepspeed-zero3" else 2
    offload = {"device": "cpu", "pin_memory": True}
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 2:
        zero |= {"allgather_partitions": True, "allgather_bucket_size": 5e8, "reduce_scatter": True}
    else:
        zero |= {
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1e9,
            "stage3_max_reuse_distance": 1e9,
            "stage3_gather_16bit_weights_on_model_save": True,
        }
    if config.offload_optimizer:
        zero["offload_optimizer"] = offload
    if config.offload_params:
        zero["offload_param"] = offload
    ds: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 2**31 - 1,  # metrics go through the run's own callback
        "wall_clock_breakdown": False,
    }
    if config.offload_optimizer or config.offload_params:
        # ZeRO-Offload steps the optimizer on the CPU with DeepSpeed's CPU Adam (a torch
        # optimizer there is refused as too slow); transformers fills the "auto" values.
        params = {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}
        ds["optimizer"] = {"type": "AdamW", "params": params}
    return ds


def trainer_arguments(config: RunConfig, activation_checkpointing: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` keywords for the run's strategy, activation checkpointing
    included (``activation_checkpointing``: the resolved setting for this device)."""
    if config.strategy == "fsdp":
        return {
            "fsdp": True,
            "fsdp_config": fsdp_config(config, activation_checkpointing),
            "activation_checkpointing": False,
        }
    arguments: dict[str, Any] = {"activation_checkpointing": activation_checkpointing}
    if config.strategy in ("deepspeed-zero2", "deepspeed-zero3"):
        arguments["deepspeed"] = deepspeed_config(config)
    return arguments


def accelerate_config(
    config: RunConfig, num_processes: int, activation_checkpointing: bool
) -> dict[str, Any]:
    """The same setup as an ``accelerate launch --config_file`` file (for reproducing a run)."""
    base = {"compute_environment": "LOCAL_MACHINE", "num_machines": 1, "machine_rank": 0,
            "num_processes": num_processes, "use_cpu": False}  # fmt: skip
    if config.strategy == "fsdp":
        return base | {
            "distributed_type": "FSDP",
            "fsdp_config": {
                "fsdp_version": 2,
                "fsdp_auto_wrap_policy": WRAP_POLICY,
                "fsdp_offload_params": config.offload_params,
                "fsdp_reshard_after_forward": True,
                "fsdp_state_dict_type": "FULL_STATE_DICT",
                "fsdp_activation_checkpointing": activation_checkpointing,
                "fsdp_cpu_ram_efficient_loading": False,
            },
        }
    if config.strategy in ("deepspeed-zero2", "deepspeed-zero3"):
        return base | {
            "distributed_type": "DEEPSPEED",
            "deepspeed_config": {"deepspeed_config_file": "deepspeed.json"},
        }
    return base | {"distributed_type": "MULTI_GPU" if num_processes > 1 else "NO"}


def launch_config(
    config: RunConfig, num_processes: int, command: list[str], *, activation_checkpointing: bool
) -> dict[str, Any]:
    """What the run is launched with, recorded on the run and in its launch directory
    (``command`` empty: trained in the worker's own process)."""
    return {
        "strategy": config.strategy,
        "num_processes": num_processes,
        "launcher": "torchrun" if command else "in-process",
        "command": command,
        "offload_optimizer": config.offload_optimizer,
        "offload_params": config.offload_params,
        "activation_checkpointing": activation_checkpointing,
        "training_arguments": trainer_arguments(config, activation_checkpointing),
        "accelerate": accelerate_config(config, num_processes, activation_checkpointing),
    }
