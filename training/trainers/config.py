"""Run configurations per training kind: defaults, validation and a field listing for forms/APIs.

Pure Python (no torch import), so the web process can validate a launch request and render a
form cheaply. ``auto`` values (precision, activation checkpointing) are resolved on the worker,
where the device is known.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

KINDS = ("reward", "sft", "dpo", "grpo", "ppo")

DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt",
)  # fmt: skip
REWARD_TYPES = ("reward_model", "principles", "length", "strings", "regex", "json")


def _f(default: Any, help: str) -> Any:
    """A dataclass field with an immutable default and help text."""
    return field(default=default, metadata={"help": help})


@dataclass(kw_only=True)
class RunConfig:
    """Settings shared by every kind."""

    kind: ClassVar[str]

    max_steps: int = _f(100, "Optimizer steps to train for.")
    batch_size: int = _f(8, "Rows per device per step (GRPO: completions; PPO: rollouts).")
    gradient_accumulation_steps: int = _f(1, "Micro-batches accumulated per optimizer step.")
    learning_rate: float = _f(1e-5, "Peak learning rate.")
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
        "constant_with_warmup", "inverse_sqrt",
    ] = _f("linear", "Learning-rate schedule (transformers' names).")  # fmt: skip
    warmup_steps: int = _f(0, "Linear warm-up steps.")
    max_grad_norm: float = _f(1.0, "Global gradient-norm clip.")
    seed: int = _f(0, "Seed for model init, data order and sampling.")
    max_length: int = _f(512, "Longest sequence in tokens (prompt + completion).")
    logging_steps: int = _f(1, "Report metrics every N steps.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _f(
        "auto", "auto = bf16 on a GPU that supports it, else fp32 (always fp32 on CPU)."
    )
    activation_checkpointing: bool | None = _f(
        None, "Recompute activations to save memory; None = on for GPU, off on CPU."
    )
    save_steps: int = _f(100, "Write a resumable checkpoint every N steps (0 = never).")
    save_total_limit: int = _f(2, "Checkpoints kept on disk.")
    eval_fraction: float = _f(0.1, "Share of rows held out for evaluation (0 = none).")

    def validate(self, world_size: int = 1) -> None:
        """Raise ValueError with a readable message when the settings cannot work."""
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "max_length",
                     "logging_steps", "save_total_limit"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.warmup_steps < 0 or self.save_steps < 0:
            raise ValueError("warmup_steps and save_steps must not be negative.")
        if self.lr_scheduler_type not in SCHEDULERS:
            raise ValueError(f"lr_scheduler_type must be one of {SCHEDULERS}.")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {self.precision!r}.")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class RewardConfig(RunConfig):
    """Bradley-Terry reward model on preference pairs (TRL RewardTrainer)."""

    kind: ClassVar[str] = "reward"
    learning_rate: float = _f(1e-4, "Peak learning rate (TRL's reward default).")
    center_rewards_coefficient: float | None = _f(
        None, "Penalty pulling mean reward to 0 (0.01 is typical); None = off."
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.center_rewards_coefficient is not None and self.center_rewards_coefficient < 0:
            raise ValueError("center_rewards_coefficient must not be negative.")


@dataclass(kw_only=True)
class PolicyConfig(RunConfig):
    """Settings shared by the kinds that train a policy (generation budget, evaluation)."""

    max_completion_length: int = _f(128, "Most new tokens per completion (training and eval).")
    eval_prompts: int = _f(16, "Held-out prompts used to compare the policy with its reference.")
    num_samples: int = _f(4, "Sample completions included in the evaluation report.")

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.max_completion_length < 1 or self.eval_prompts < 0 or self.num_samples < 0:
            raise ValueError("max_completion_length must be >= 1; eval_prompts, num_samples >= 0.")


@dataclass(kw_only=True)
class SFTConfig(PolicyConfig):
    """Supervised fine-tuning on chat ``messages`` (TRL SFTTrainer)."""

    kind: ClassVar[str] = "sft"
    learning_rate: float = _f(2e-5, "Peak learning rate (TRL's SFT default).")
    assistant_only_loss: bool | None = _f(
        None, "Loss on assistant tokens only; None = when the chat template marks them."
    )
    packing: bool = _f(False, "Pack several conversations into one sequence.")


@dataclass(kw_only=True)
class DPOConfig(PolicyConfig):
    """Direct preference optimisation (TRL DPOTrainer)."""

    kind: ClassVar[str] = "dpo"
    learning_rate: float = _f(1e-6, "Peak learning rate (TRL's DPO default).")
    loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid"],
        metadata={"help": f"One or more of: {', '.join(DPO_LOSS_TYPES)}."},
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights when several loss types are combined."}
    )
    beta: float = _f(0.1, "Strength of the implicit KL to the reference model.")
    label_smoothing: float = _f(
        0.0, "Label noise; for 'robust' the assumed preference flip rate, in [0, 0.5)."
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if not self.loss_type:
            raise ValueError("loss_type needs at least one entry.")
        unknown = [t for t in self.loss_type if t not in DPO_LOSS_TYPES]
        if unknown:
            raise ValueError(f"Unknown DPO loss_type {unknown}; choose from {DPO_LOSS_TYPES}.")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError("loss_weights must have one weight per loss_type entry.")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}.")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}.")
        if "exo_pair" in self.loss_type and self.label_smoothing == 0:
            raise ValueError("loss_type 'exo_pair' needs label_smoothing > 0 (e.g. 1e-3).")


@dataclass(kw_only=True)
class OnlineRLConfig(PolicyConfig):
    """Settings shared by GRPO and PPO: sampling and the reward specification."""

    temperature: float = _f(1.0, "Sampling temperature for rollouts.")
    rewards: list[dict[str, Any]] = field(
        default_factory=lambda: [{"type": "reward_model"}],
        metadata={
            "help": "Weighted rewards, each {'type': ..., 'weight': 1.0, ...}. Types: "
            "reward_model {model: name}; principles {models: [names], weights | priorities}; "
            "length {target: chars}; strings {required: [...], forbidden: [...]}; "
            "regex {pattern}; json {}."
        },
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}.")
        if not self.rewards:
            raise ValueError("rewards needs at least one entry.")
        for spec in self.rewards:
            validate_reward_spec(spec)


@dataclass(kw_only=True)
class GRPOConfig(OnlineRLConfig):
    """Group-relative policy optimisation (TRL GRPOTrainer)."""

    kind: ClassVar[str] = "grpo"
    learning_rate: float = _f(1e-6, "Peak learning rate (TRL's GRPO default).")
    num_generations: int = _f(8, "Completions sampled per prompt (at least 2).")
    beta: float = _f(0.0, "KL coefficient to the reference (0 = no reference model).")
    num_iterations: int = _f(1, "Optimisation passes per generation batch (>1 = clipped reuse).")
    loss_type: str = _f("dapo", f"One of: {', '.join(GRPO_LOSS_TYPES)}.")

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be at least 2, got {self.num_generations}.")
        generation_batch = self.batch_size * self.gradient_accumulation_steps * world_size
        if generation_batch % self.num_generations:
            raise ValueError(
                f"batch_size x gradient_accumulation_steps x processes ({generation_batch}) "
                f"must be divisible by num_generations ({self.num_generations})."
            )
        if self.loss_type not in GRPO_LOSS_TYPES:
            raise ValueError(f"Unknown GRPO loss_type {self.loss_type!r}; use {GRPO_LOSS_TYPES}.")
        if self.beta < 0 or self.num_iterations < 1:
            raise ValueError("beta must be >= 0 and num_iterations >= 1.")


@dataclass(kw_only=True)
class PPOConfig(OnlineRLConfig):
    """The project's PPO with the PPO-max choices (see training/trainers/ppo.py)."""

    kind: ClassVar[str] = "ppo"
    learning_rate: float = _f(1e-6, "Policy learning rate.")
    value_learning_rate: float = _f(5e-6, "Value model learning rate.")
    ppo_epochs: int = _f(2, "Optimisation passes over each rollout batch.")
    num_mini_batches: int = _f(1, "Mini-batches per pass (must divide batch_size).")
    kl_coef: float = _f(0.05, "Per-token KL penalty to the reference policy.")
    gamma: float = _f(1.0, "Discount factor.")
    lam: float = _f(0.95, "GAE lambda.")
    cliprange: float = _f(0.2, "Policy ratio clip.")
    cliprange_value: float = _f(0.2, "Value prediction clip around the rollout values.")
    reward_clip: float = _f(5.0, "Clip normalised rewards to [-reward_clip, reward_clip].")
    normalize_rewards: bool = _f(True, "Normalise rewards by running mean and std.")
    whiten_advantages: bool = _f(True, "Normalise advantages within each batch.")
    entropy_coef: float = _f(0.0, "Entropy bonus (PPO-max leaves it at 0; always logged).")
    top_k: int = _f(0, "Sampling top-k (0 = off).")
    top_p: float = _f(1.0, "Sampling nucleus probability.")
    value_init: Literal["policy", "reward_model"] = _f(
        "policy", "Initialise the value model from the policy or from the (single) reward model."
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if world_size != 1:
            raise ValueError("PPO runs in a single process; launch it without torchrun.")
        if self.gradient_accumulation_steps != 1:
            raise ValueError(
                "PPO splits batches with num_mini_batches; keep gradient_accumulation_steps=1."
            )
        if self.precision == "fp16":
            raise ValueError("PPO supports precision auto, bf16 or fp32 (fp16 needs loss scaling).")
        if self.ppo_epochs < 1 or self.num_mini_batches < 1:
            raise ValueError("ppo_epochs and num_mini_batches must be at least 1.")
        if self.batch_size % self.num_mini_batches:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by num_mini_batches "
                f"({self.num_mini_batches})."
            )
        if self.value_learning_rate <= 0 or self.kl_coef < 0 or self.entropy_coef < 0:
            raise ValueError("value_learning_rate must be > 0; kl_coef, entropy_coef >= 0.")
        if not (0 < self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("gamma must be in (0, 1] and lam in [0, 1].")
        if self.cliprange <= 0 or self.cliprange_value <= 0 or self.reward_clip <= 0:
            raise ValueError("cliprange, cliprange_value and reward_clip must be positive.")
        if self.value_init not in ("policy", "reward_model"):
            raise ValueError("value_init must be 'policy' or 'reward_model'.")


CONFIGS: dict[str, type[RunConfig]] = {
    c.kind: c for c in (RewardConfig, SFTConfig, DPOConfig, GRPOConfig, PPOConfig)
}


def validate_reward_spec(spec: dict[str, Any]) -> None:
    """Check one entry of ``rewards`` (see OnlineRLConfig.rewards)."""
    if not isinstance(spec, dict) or spec.get("type") not in REWARD_TYPES:
        raise ValueError(f"Each reward needs a 'type' in {REWARD_TYPES}, got {spec!r}.")
    kind = spec["type"]
    allowed = {
        "reward_model": {"model"},
        "principles": {"models", "weights", "priorities"},
        "length": {"target"},
        "strings": {"required", "forbidden"},
        "regex": {"pattern"},
        "json": set(),
    }[kind] | {"type", "weight"}
    extra = set(spec) - allowed
    if extra:
        raise ValueError(f"Unknown keys {sorted(extra)} for reward type {kind!r}.")
    if not isinstance(spec.get("weight", 1.0), int | float):
        raise ValueError(f"Reward weight must be a number, got {spec.get('weight')!r}.")
    if kind == "length" and not (isinstance(spec.get("target"), int) and spec["target"] > 0):
        raise ValueError("Reward 'length' needs a positive integer 'target' (characters).")
    if kind == "strings" and not (spec.get("required") or spec.get("forbidden")):
        raise ValueError("Reward 'strings' needs 'required' and/or 'forbidden' lists.")
    if kind == "regex":
        try:
            re.compile(spec.get("pattern", ""))
        except (re.error, TypeError) as exc:
            raise ValueError(f"Reward 'regex' has an invalid pattern: {exc}") from exc
        if not spec.get("pattern"):
            raise ValueError("Reward 'regex' needs a non-empty 'pattern'.")
    if kind == "principles":
        if "weights" in spec and "priorities" in spec:
            raise ValueError("Reward 'principles' takes 'weights' or 'priorities', not both.")
        priorities = spec.get("priorities", {})
        if any(not isinstance(p, int) or p < 1 for p in priorities.values()):
            raise ValueError("Principle priorities must be integers >= 1 (1 = highest).")


def from_dict(kind: str, values: dict[str, Any] | None = None, *, world_size: int = 1) -> RunConfig:
    """Build and validate the config of ``kind`` from plain values, filling defaults."""
    if kind not in CONFIGS:
        raise ValueError(f"Unknown training kind {kind!r}; choose from {KINDS}.")
    cls = CONFIGS[kind]
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"Unknown {kind} config fields: {unknown}.")
    try:
        config = cls(**values)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    _check_types(config)
    config.validate(world_size)
    return config


def _check_types(config: RunConfig) -> None:
    """Reject wrong scalar types from forms and JSON (e.g. "8" for max_steps); 8.0 becomes 8."""
    for f in dataclasses.fields(config):
        value, default = getattr(config, f.name), f.default
        if default is dataclasses.MISSING or default is None or value is None:
            continue
        if isinstance(default, bool) != isinstance(value, bool):
            raise ValueError(f"{f.name} must be a boolean, got {value!r}.")
        if isinstance(default, int | float) and not isinstance(value, int | float):
            raise ValueError(f"{f.name} must be a number, got {value!r}.")
        if isinstance(default, int) and not isinstance(default, bool):
            if value != int(value):
                raise ValueError(f"{f.name} must be an integer, got {value!r}.")
            setattr(config, f.name, int(value))
        if isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"{f.name} must be a string, got {value!r}.")


def describe_fields(kind: str) -> list[dict[str, Any]]:
    """``[{name, type, default, help}]`` for ``kind``, in declaration order (forms, API docs)."""
    if kind not in CONFIGS:
        raise ValueError(f"Unknown training kind {kind!r}; choose from {KINDS}.")
    defaults = CONFIGS[kind]()
    return [
        {
            "name": f.name,
            "type": str(f.type),
            "default": getattr(defaults, f.name),
            "help": f.metadata.get("help", ""),
        }
        for f in dataclasses.fields(defaults)
    ]
