"""Distributed strategies: config rules, the generated FSDP / DeepSpeed configurations (the
ZeRO ones parsed by DeepSpeed itself), and what a sharded run does on a CPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.training.test_trainers import POLICY_FAST, torchrun
from training import strategies
from training.trainers import from_dict
from training.trainers.config import ConfigError

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.mark.parametrize(
    ("kind", "values", "field", "words"),
    [
        ("dpo", {"strategy": "zero"}, "strategy", "must be one of"),
        ("dpo", {"offload_optimizer": True}, "offload_optimizer", "need strategy fsdp"),
        ("sft", {"strategy": "fsdp", "offload_optimizer": True}, "offload_optimizer", "together"),
        ("reward", {"strategy": "deepspeed-zero2", "offload_params": True}, "offload_params",
         "does not partition parameters"),
        ("ppo", {"strategy": "deepspeed-zero3"}, "strategy", "PPO runs in a single process"),
    ],
)  # fmt: skip
def test_strategy_rules_name_the_field(kind, values, field, words):
    with pytest.raises(ConfigError) as error:
        from_dict(kind, values)
    assert error.value.field == field and words in str(error.value)


def test_allowed_combinations_and_defaults():
    assert from_dict("dpo", {}).strategy == "ddp"
    for values in (
        {"strategy": "fsdp", "offload_params": True, "offload_optimizer": True},
        {"strategy": "deepspeed-zero2", "offload_optimizer": True},
        {"strategy": "deepspeed-zero3", "offload_params": True, "offload_optimizer": True},
    ):
        assert from_dict("grpo", {**values, "batch_size": 8}, world_size=1).strategy
    assert strategies.uses_launcher("fsdp", 1) and strategies.uses_launcher("ddp", 2)
    assert not strategies.uses_launcher("ddp", 1)


def test_fsdp_arguments_build_the_accelerate_plugin_with_fsdp_checkpointing():
    """transformers turns our keywords into accelerate's FSDP2 plugin: transformer-layer
    wrapping, CPU offload, FSDP's own activation checkpointing, transformers' turned off."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import TrainingArguments

    config = from_dict("sft", {"strategy": "fsdp", "offload_params": True})
    keywords = strategies.trainer_arguments(config, activation_checkpointing=True)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", **keywords)
    assert args.activation_checkpointing is False
    plugin_args = args.fsdp_plugin_args
    assert plugin_args["fsdp_version"] == 2 and plugin_args["activation_checkpointing"] is True
    assert plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin_args["cpu_offload"] is True
    plugin = FullyShardedDataParallelPlugin(**plugin_args)
    assert plugin.fsdp_version == 2 and plugin.activation_checkpointing
    assert type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy"

    ddp = strategies.trainer_arguments(from_dict("sft", {}), activation_checkpointing=True)
    assert ddp == {"activation_checkpointing": True}


@pytest.mark.parametrize(
    ("strategy", "offload", "stage"),
    [("deepspeed-zero2", {}, 2), ("deepspeed-zero2", {"offload_optimizer": True}, 2),
     ("deepspeed-zero3", {}, 3), ("deepspeed-zero3",
                                  {"offload_optimizer": True, "offload_params": True}, 3)],
)  # fmt: skip
def test_deepspeed_configs_pass_deepspeeds_own_parser(strategy, offload, stage):
    """transformers fills the "auto" values from the run's training arguments (as the Trainer
    does), then DeepSpeed's ``DeepSpeedConfig`` parses and checks the result."""
    deepspeed_config = pytest.importorskip("deepspeed.runtime.config")
    from transformers import GPT2Config, GPT2LMHeadModel, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    config = from_dict(
        "dpo", {"strategy": strategy, **offload, "batch_size": 4, "gradient_accumulation_steps": 2}
    )
    generated = strategies.deepspeed_config(config)
    json.dumps(generated)  # written to the run's launch directory as deepspeed.json
    args = TrainingArguments(
        output_dir="unused",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        use_cpu=True,
        report_to="none",
    )
    resolved = HfTrainerDeepSpeedConfig(generated)
    resolved.trainer_config_process(args)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    resolved.trainer_config_finalize(args, model, num_training_steps=10)
    parsed = deepspeed_config.DeepSpeedConfig(resolved.config)
    assert parsed.zero_optimization_stage == stage
    assert (parsed.train_micro_batch_size_per_gpu, parsed.gradient_accumulation_steps) == (4, 2)
    assert parsed.train_batch_size == 8  # world size 1 here
    zero = parsed.zero_config
    assert (zero.offload_optimizer is not None) == bool(offload.get("offload_optimizer"))
    assert (zero.offload_param is not None) == bool(offload.get("offload_params"))
    if offload:
        assert parsed.optimizer_name == "adamw"

    broken = {**resolved.config, "zero_optimization": {"stage": stage, "no_such_option": 1}}
    with pytest.raises(Exception, match="no_such_option"):
        deepspeed_config.DeepSpeedConfig(broken)


def test_launch_config_records_the_strategy_and_its_accelerate_equivalent():
    config = from_dict("dpo", {"strategy": "deepspeed-zero3", "offload_params": True})
    record = strategies.launch_config(config, 8, ["torchrun"], activation_checkpointing=True)
    assert record["launcher"] == "torchrun" and record["num_processes"] == 8
    assert record["training_arguments"]["deepspeed"]["zero_optimization"]["stage"] == 3
    assert record["training_arguments"]["activation_checkpointing"] is True
    assert record["accelerate"]["distributed_type"] == "DEEPSPEED"
    fsdp = strategies.launch_config(
        from_dict("dpo", {"strategy": "fsdp"}), 2, ["torchrun"], activation_checkpointing=True
    )
    assert fsdp["accelerate"]["distributed_type"] == "FSDP"
    assert fsdp["accelerate"]["fsdp_config"]["fsdp_activation_checkpointing"] is True
    json.dumps(record)


@pytest.mark.training
@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed-zero3"])
def test_sharded_strategy_refuses_a_cpu_machine_under_torchrun(tmp_path, strategy):
    """Two gloo processes under torchrun: accelerate would run FSDP as plain DDP on CPU and
    never start DeepSpeed's communication, so the run fails at once with the reason."""
    config = {**POLICY_FAST, "max_steps": 2, "batch_size": 4, "strategy": strategy}
    result, progress = torchrun(tmp_path, strategy, config, expect_failure=True)
    assert result["status"] == "failed" and progress == []
    assert strategies.CPU_REFUSAL.format(strategy=strategy) in result["error"]


ACCELERATE_ON_CPU = """
import sys
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin
accelerator = Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
plugin = getattr(accelerator.state, "fsdp_plugin", None)
# one write per rank: the two ranks share stdout
sys.stdout.write(f"WORLD {dist.get_world_size()} {accelerator.distributed_type.value} {plugin}\\n")
sys.stdout.flush()
"""


@pytest.mark.training
def test_accelerate_drops_fsdp_on_cpu_which_is_why_cpu_runs_refuse_it(tmp_path):
    """The reason for ``CPU_REFUSAL``, checked against the installed accelerate: given an FSDP
    plugin in two gloo processes it keeps plain multi-CPU data parallelism. When this fails,
    accelerate shards on CPU and the refusal can go."""
    script = tmp_path / "accelerate_on_cpu.py"
    script.write_text(ACCELERATE_ON_CPU)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(script)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("WORLD 2 MULTI_CPU None") == 2, done.stdout


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"])
def test_the_recorded_accelerate_config_loads_with_accelerates_own_loader(tmp_path, strategy):
    from accelerate.commands.config.config_args import load_config_from_file

    config = from_dict("dpo", {"strategy": strategy})
    path = tmp_path / "accelerate_config.json"
    path.write_text(json.dumps(strategies.accelerate_config(config, 4, True)))
    loaded = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP"}.get(strategy, "DEEPSPEED")
    assert (loaded.distributed_type.value, loaded.num_processes) == (expected, 4)
    if strategy == "fsdp":
        assert loaded.fsdp_config["fsdp_version"] == 2
        assert loaded.fsdp_config["fsdp_activation_checkpointing"] is True
