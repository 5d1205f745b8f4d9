"""LoRA and QLoRA for every kind: the ``peft`` adapter config of a run, the 4-bit quantisation
config of a QLoRA run, and the checks that refuse QLoRA where it cannot run.

A run with ``peft`` set trains an adapter over its frozen base and publishes the adapter (see
``models_registry.adapters`` for how one is loaded back). A reward model's adapter is a
``SEQ_CLS`` task, so peft keeps its ``score`` / ``classifier`` head trainable and saves it with
the adapter (``modules_to_save``).
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from training.trainers.config import RunConfig

#: Attention and MLP projections per ``model_type``; other types use peft's own mapping,
#: else every linear layer.
_LLAMA_LIKE = (
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2",
)  # fmt: skip
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    **{
        model_type: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        for model_type in _LLAMA_LIKE
    },
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "bert": ["query", "key", "value", "dense"],
}


def qlora_unavailable() -> str | None:
    """Why QLoRA cannot run in this process (no CUDA GPU, no bitsandbytes), or None."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "peft 'qlora' needs bitsandbytes (pip install bitsandbytes), which is not installed"
    import torch

    if not torch.cuda.is_available():
        return "peft 'qlora' needs a CUDA GPU (4-bit bitsandbytes); this worker has none"
    return None


def target_modules(config: RunConfig, model_type: str | None) -> list[str] | str:
    """The run's ``lora_target_modules``, else the architecture's default."""
    if config.lora_target_modules:
        return list(config.lora_target_modules)
    if model_type in DEFAULT_TARGET_MODULES:
        return list(DEFAULT_TARGET_MODULES[model_type])
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type or "", [])) or (
        "all-linear"
    )


def lora_config(
    config: RunConfig, model: Any, *, head: Literal["causal_lm", "reward"], base: str
) -> Any:
    """The peft ``LoraConfig`` of a run (None when ``config.peft`` is ``none``). ``base`` is
    recorded as the adapter's base (the path or id the run started from)."""
    if config.peft == "none":
        return None
    from peft import LoraConfig, TaskType

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_modules(config, getattr(model.config, "model_type", None)),
        task_type=TaskType.SEQ_CLS if head == "reward" else TaskType.CAUSAL_LM,
        base_model_name_or_path=base,
    )


def quantization(config: RunConfig) -> dict[str, Any]:
    """``from_pretrained`` keywords that load a QLoRA run's base in 4-bit NF4 (empty for other
    runs); raises ValueError where QLoRA cannot run."""
    if config.peft != "qlora":
        return {}
    reason = qlora_unavailable()
    if reason:
        raise ValueError(reason)
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.float16 if config.precision == "fp16" else torch.bfloat16
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        ),
        "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))},  # this rank's GPU
    }


def prepare_quantized(model: Any, config: RunConfig, checkpointing: bool) -> Any:
    """A 4-bit model made ready for adapter training (peft's k-bit preparation)."""
    if config.peft != "qlora":
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
