"""Run configurations per training kind: defaults, validation and a field listing for forms/APIs.

Pure Python (no torch import), so the web process can validate a launch request and render a
form cheaply. ``auto`` values (precision, activation checkpointing) are resolved on the worker,
where the device is known.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, ClassVar, Literal

KINDS = ("reward", "sft", "dpo", "grpo", "ppo", "kto", "orpo")

DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt",
)  # fmt: skip
RANKING_PAIRS = ("all", "adjacent", "best_vs_rest")
TRACKERS = ("mlflow", "tensorboard", "wandb")  # report_to: transformers' integrations
#: tracker → (the module transformers imports, the package that provides it)
TRACKER_PACKAGES = {
    "mlflow": ("mlflow", "mlflow-skinny"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
}
REWARD_TYPES = ("reward_model", "principles", "length", "strings", "regex", "json")
INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy's seed range (transformers.set_seed seeds numpy)
LIST_MAX_ITEMS = 32  # loss types, loss weights, rewards, reward model names, strings
TEXT_MAX_CHARS = 1000  # one string inside a config (a reward's pattern, a required string)


class ConfigError(ValueError):
    """A config value that cannot work; ``field`` names it (None: a rule over several fields)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Limits:
    """Upper bounds a deployment allows at launch (each read from a setting; see
    ``training.validation.limits``). Without limits only a field's own range applies (workers
    re-validate what the web process accepted)."""

    max_steps: int = INT64_MAX
    batch_size: int = INT64_MAX
    gradient_accumulation_steps: int = INT64_MAX
    max_length: int = INT64_MAX
    learning_rate: float = math.inf

    #: the setting that holds each limit, named in error messages
    SETTINGS: ClassVar[dict[str, str]] = {
        "max_steps": "TRAINING_MAX_STEPS",
        "batch_size": "TRAINING_MAX_BATCH_SIZE",
        "gradient_accumulation_steps": "TRAINING_MAX_GRADIENT_ACCUMULATION",
        "max_length": "TRAINING_MAX_LENGTH",
        "learning_rate": "TRAINING_MAX_LEARNING_RATE",
    }


def _f(default: Any, help: str, low: float | None = None, high: float | str | None = None) -> Any:
    """A dataclass field with an immutable default and help text; a number's inclusive bounds
    ``low``/``high``, where ``high`` may name a :class:`Limits` attribute."""
    return field(default=default, metadata={"help": help, "low": low, "high": high})


@dataclass(kw_only=True)
class RunConfig:
    """Settings shared by every kind."""

    kind: ClassVar[str]

    max_steps: int = _f(100, "Optimizer steps to train for.", 1, "max_steps")
    batch_size: int = _f(
        8, "Rows per device per step (GRPO: completions; PPO: rollouts).", 1, "batch_size"
    )
    gradient_accumulation_steps: int = _f(
        1, "Micro-batches accumulated per optimizer step.", 1, "gradient_accumulation_steps"
    )
    learning_rate: float = _f(1e-5, "Peak learning rate.", 0, "learning_rate")
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
        "constant_with_warmup", "inverse_sqrt",
    ] = _f("linear", "Learning-rate schedule (transformers' names).")  # fmt: skip
    warmup_steps: int = _f(0, "Linear warm-up steps.", 0, "max_steps")
    max_grad_norm: float = _f(1.0, "Global gradient-norm clip (0 = off).", 0, 1e6)
    seed: int = _f(0, "Seed for model init, data order and sampling.", 0, SEED_MAX)
    max_length: int = _f(512, "Longest sequence in tokens (prompt + completion).", 1, "max_length")
    logging_steps: int = _f(1, "Report metrics every N steps.", 1, "max_steps")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _f(
        "auto", "auto = bf16 on a GPU that supports it, else fp32 (always fp32 on CPU)."
    )
    activation_checkpointing: bool | None = _f(
        None, "Recompute activations to save memory; None = on for GPU, off on CPU."
    )
    save_steps: int = _f(
        100, "Write a resumable checkpoint every N steps (0 = never).", 0, "max_steps"
    )
    save_total_limit: int = _f(2, "Checkpoints kept on disk.", 1, 1000)
    eval_fraction: float = _f(0.1, "Share of rows held out for evaluation (0 = none).", 0, 1)
    # --- Trainer options ---
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = _f(
        "auto",
        "Attention kernel; auto = the model's default. flash_attention_2 needs a GPU "
        "worker with flash_attn installed.",
    )
    torch_compile: bool = _f(False, "Compile the model with torch.compile.")
    use_liger_kernel: bool = _f(False, "Liger fused kernels (needs liger_kernel installed).")
    optim: Literal["adamw_torch", "adamw_torch_fused", "adafactor", "adamw_8bit", "sgd"] = _f(
        "adamw_torch_fused",
        "Optimizer (transformers' names; the default is transformers' own); adamw_8bit needs a "
        "GPU and bitsandbytes.",
    )
    weight_decay: float = _f(0.0, "Decoupled weight decay.", 0, 10)
    num_train_epochs: float | None = _f(
        None,
        "Passes over the training rows; the run stops after these or max_steps, whichever "
        "comes first (None = max_steps only).",
        0,
        1e6,
    )
    warmup_ratio: float | None = _f(
        None, "Warm-up as a share of the run's steps, in [0, 1); replaces warmup_steps.", 0, 1
    )
    eval_steps: int = _f(
        0,
        "Evaluate on the held-out rows every N steps while training (0 = only at the end).",
        0,
        "max_steps",
    )
    early_stopping_patience: int = _f(
        0,
        "Stop after N evaluations without improving metric_for_best_model (0 = off; needs "
        "eval_steps). The artifact is the model at the stop.",
        0,
        1000,
    )
    metric_for_best_model: str = _f(
        "loss",
        "Evaluation metric early stopping watches (without 'eval_'); names containing "
        "'loss' are minimised, others maximised.",
    )

    #: trainer options a kind ignores, refused when set away from their defaults
    UNSUPPORTED_OPTIONS: ClassVar[tuple[str, ...]] = ()

    # --- Tracking ---
    report_to: list[str] | None = field(
        default=None,
        metadata={
            "help": f"Experiment trackers to report to besides the platform ({', '.join(TRACKERS)}"
            "); unset = the deployment's TRAINING_REPORT_TO, [] = none. Their own environment "
            "(MLFLOW_TRACKING_URI, TENSORBOARD_LOGGING_DIR, WANDB_PROJECT …) configures them."
        },
    )

    # --- PEFT ---
    peft: Literal["none", "lora", "qlora"] = _f(
        "none",
        "none = train every weight; lora = train a low-rank adapter (the artifact is the "
        "adapter); qlora = LoRA over a 4-bit base (GPU with bitsandbytes only).",
    )
    lora_r: int = _f(16, "LoRA rank.", 1, 4096)
    lora_alpha: int = _f(32, "LoRA scaling numerator (scale = alpha / r).", 1, 1_000_000)
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input, in [0, 1).", 0, 1)
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt; None = the architecture's default "
            "(attention and MLP projections), or every linear layer for unknown ones."
        },
    )

    # --- Strategy ---
    strategy: Literal["ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"] = _f(
        "ddp",
        "ddp = a full replica per process; fsdp / deepspeed-zero2 / deepspeed-zero3 shard "
        "optimizer state, gradients (and, for fsdp and zero3, parameters) across processes.",
    )
    offload_optimizer: bool = _f(
        False, "Keep optimizer state on the CPU (deepspeed-zero2/zero3; fsdp: see offload_params)."
    )
    offload_params: bool = _f(
        False, "Keep parameters on the CPU (fsdp: with gradients and optimizer state; zero3)."
    )

    def validate(self, world_size: int = 1) -> None:
        """Raise ValueError with a readable message when the settings cannot work."""
        self._validate_trainer_options()
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
        trackers = self.report_to or []
        if any(t not in TRACKERS for t in trackers) or len(set(trackers)) != len(trackers):
            raise ValueError(f"report_to takes distinct trackers from {', '.join(TRACKERS)}.")
        if self.peft not in ("none", "lora", "qlora"):
            raise ValueError(f"peft must be none, lora or qlora, got {self.peft!r}.")
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise ValueError("lora_r must be at least 1 and lora_alpha positive.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.lora_target_modules is not None and (
            not self.lora_target_modules or not all(m.strip() for m in self.lora_target_modules)
        ):
            raise ValueError(
                "lora_target_modules must list module names (e.g. q_proj, v_proj) or be null "
                "for the architecture's default."
            )
        if self.peft == "qlora" and self.precision == "fp32":
            raise ValueError(
                "peft 'qlora' computes in bf16 or fp16 on a GPU; set precision auto, bf16 or fp16."
            )
        validate_strategy(self.strategy, self.offload_optimizer, self.offload_params)

    def _validate_trainer_options(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        for name in self.UNSUPPORTED_OPTIONS:
            if getattr(self, name) != defaults[name]:
                raise ValueError(f"{name} is not supported by {self.kind} runs.")
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
            if self.warmup_steps:
                raise ValueError("warmup_ratio replaces warmup_steps; set only one of them.")
        if self.num_train_epochs is not None and self.num_train_epochs <= 0:
            raise ValueError(f"num_train_epochs must be positive, got {self.num_train_epochs}.")
        if self.early_stopping_patience and not self.eval_steps:
            raise ValueError("early_stopping_patience needs eval_steps (evaluations to watch).")
        if self.eval_steps and self.eval_fraction == 0:
            raise ValueError("eval_steps needs held-out rows: set eval_fraction above 0.")
        if not re.fullmatch(r"[\w/.-]{1,100}", self.metric_for_best_model):
            raise ValueError("metric_for_best_model must be a metric name such as 'loss'.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class RewardConfig(RunConfig):
    """Bradley-Terry reward model on preference pairs (TRL RewardTrainer)."""

    kind: ClassVar[str] = "reward"
    learning_rate: float = _f(
        1e-4, "Peak learning rate (TRL's reward default).", 0, "learning_rate"
    )
    center_rewards_coefficient: float | None = _f(
        None, "Penalty pulling mean reward to 0 (0.01 is typical); None = off.", 0, 1e3
    )
    # --- Ranking snapshots ---
    ranking_pairs: Literal["all", "adjacent", "best_vs_rest"] = _f(
        "all",
        "How a ranking snapshot's K responses become pairs: all ordered pairs, adjacent "
        "ranks only, or the best against each other (ties are skipped).",
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.center_rewards_coefficient is not None and self.center_rewards_coefficient < 0:
            raise ValueError("center_rewards_coefficient must not be negative.")


@dataclass(kw_only=True)
class PolicyConfig(RunConfig):
    """Settings shared by the kinds that train a policy (generation budget, evaluation)."""

    max_completion_length: int = _f(
        128, "Most new tokens per completion (training and eval).", 1, "max_length"
    )
    eval_prompts: int = _f(
        16, "Held-out prompts used to compare the policy with its reference.", 0, 100_000
    )
    num_samples: int = _f(4, "Sample completions included in the evaluation report.", 0, 1000)

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.max_completion_length < 1 or self.eval_prompts < 0 or self.num_samples < 0:
            raise ValueError("max_completion_length must be >= 1; eval_prompts, num_samples >= 0.")


@dataclass(kw_only=True)
class SFTConfig(PolicyConfig):
    """Supervised fine-tuning on chat ``messages`` (TRL SFTTrainer)."""

    kind: ClassVar[str] = "sft"
    learning_rate: float = _f(2e-5, "Peak learning rate (TRL's SFT default).", 0, "learning_rate")
    assistant_only_loss: bool | None = _f(
        None, "Loss on assistant tokens only; None = when the chat template marks them."
    )
    packing: bool = _f(False, "Pack several conversations into one sequence.")
    # --- Trainer options ---
    padding_free: bool = _f(False, "Flatten batches without padding (needs flash attention).")


@dataclass(kw_only=True)
class DPOConfig(PolicyConfig):
    """Direct preference optimisation (TRL DPOTrainer)."""

    kind: ClassVar[str] = "dpo"
    learning_rate: float = _f(1e-6, "Peak learning rate (TRL's DPO default).", 0, "learning_rate")
    loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid"],
        metadata={"help": f"One or more of: {', '.join(DPO_LOSS_TYPES)}."},
    )
    loss_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Weights when several loss types are combined.", "low": 0, "high": 1e3},
    )
    beta: float = _f(0.1, "Strength of the implicit KL to the reference model.", 0, 1e3)
    label_smoothing: float = _f(
        0.0, "Label noise; for 'robust' the assumed preference flip rate, in [0, 0.5).", 0, 0.5
    )
    # --- Ranking snapshots ---
    ranking_pairs: Literal["all", "adjacent", "best_vs_rest"] = _f(
        "all",
        "How a ranking snapshot's K responses become pairs: all ordered pairs, adjacent "
        "ranks only, or the best against each other (ties are skipped).",
    )
    # --- Trainer options ---
    padding_free: bool = _f(False, "Flatten batches without padding (needs flash attention).")
    precompute_ref_log_probs: bool = _f(
        False,
        "Compute the reference log-probabilities once before training (frees the "
        "reference model's memory while training).",
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

    temperature: float = _f(1.0, "Sampling temperature for rollouts.", 0, 100)
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
    learning_rate: float = _f(1e-6, "Peak learning rate (TRL's GRPO default).", 0, "learning_rate")
    num_generations: int = _f(8, "Completions sampled per prompt (at least 2).", 2, "batch_size")
    beta: float = _f(
        0.0,
        "KL coefficient to the reference. 0 (the default) loads no reference model, so no "
        "KL is logged; set e.g. 0.04 to see and limit the drift.",
        0,
        1e3,
    )
    num_iterations: int = _f(
        1, "Optimisation passes per generation batch (>1 = clipped reuse).", 1, 100
    )
    loss_type: str = _f("dapo", f"One of: {', '.join(GRPO_LOSS_TYPES)}.")
    # --- Trainer options ---
    scale_rewards: Literal["group", "batch", "none"] = _f(
        "group", "Divide advantages by the reward std of the group, of the batch, or not at all."
    )
    mask_truncated_completions: bool = _f(
        False, "Leave completions cut at max_completion_length out of the loss."
    )
    steps_per_generation: int | None = _f(
        None,
        "Optimizer micro-steps per generation batch (None = gradient_accumulation_steps).",
        1,
        1000,
    )
    top_p: float = _f(1.0, "Sampling nucleus probability.", 0, 1)
    top_k: int = _f(0, "Sampling top-k (0 = off).", 0, 1_000_000)
    # --- vLLM rollouts ---
    use_vllm: bool = _f(False, "Generate rollouts with vLLM (GPU worker with vllm installed).")
    vllm_mode: Literal["colocate", "server"] = _f(
        "colocate", "colocate: vLLM shares the training GPU; server: a `trl vllm-serve` process."
    )
    vllm_server_base_url: str = _f("", "The vLLM server's URL in server mode (http://host:8000).")
    vllm_gpu_memory_utilization: float = _f(
        0.3, "Share of GPU memory vLLM may take in colocate mode.", 0, 1
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be at least 2, got {self.num_generations}.")
        micro_steps = self.steps_per_generation or self.gradient_accumulation_steps
        generation_batch = self.batch_size * micro_steps * world_size
        if generation_batch % self.num_generations:
            raise ValueError(
                f"batch_size x steps_per_generation (default gradient_accumulation_steps) x "
                f"processes ({generation_batch}) must be divisible by num_generations "
                f"({self.num_generations})."
            )
        if self.eval_steps and (self.batch_size * world_size) % self.num_generations:
            raise ValueError(
                f"eval_steps evaluates batch_size x processes ({self.batch_size * world_size}) "
                f"completions at a time, which must be divisible by num_generations "
                f"({self.num_generations})."
            )
        if self.top_p <= 0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if (
            self.use_vllm
            and self.vllm_mode == "server"
            and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.vllm_server_base_url)
        ):
            raise ValueError("vllm_server_base_url must be an http(s) URL in vllm_mode 'server'.")
        if self.use_vllm and self.vllm_mode == "colocate" and self.vllm_gpu_memory_utilization <= 0:
            raise ValueError("vllm_gpu_memory_utilization must be in (0, 1].")
        if self.loss_type not in GRPO_LOSS_TYPES:
            raise ValueError(f"Unknown GRPO loss_type {self.loss_type!r}; use {GRPO_LOSS_TYPES}.")
        if self.beta < 0 or self.num_iterations < 1:
            raise ValueError("beta must be >= 0 and num_iterations >= 1.")


@dataclass(kw_only=True)
class PPOConfig(OnlineRLConfig):
    """The project's PPO with the PPO-max choices (see training/trainers/ppo.py)."""

    kind: ClassVar[str] = "ppo"
    learning_rate: float = _f(1e-6, "Policy learning rate.", 0, "learning_rate")
    value_learning_rate: float = _f(5e-6, "Value model learning rate.", 0, "learning_rate")
    ppo_epochs: int = _f(2, "Optimisation passes over each rollout batch.", 1, 100)
    num_mini_batches: int = _f(
        1, "Mini-batches per pass (must divide batch_size).", 1, "batch_size"
    )
    kl_coef: float = _f(0.05, "Per-token KL penalty to the reference policy.", 0, 1e3)
    gamma: float = _f(1.0, "Discount factor.", 0, 1)
    lam: float = _f(0.95, "GAE lambda.", 0, 1)
    cliprange: float = _f(0.2, "Policy ratio clip.", 0, 1e3)
    cliprange_value: float = _f(0.2, "Value prediction clip around the rollout values.", 0, 1e3)
    reward_clip: float = _f(5.0, "Clip normalised rewards to [-reward_clip, reward_clip].", 0, 1e6)
    normalize_rewards: bool = _f(True, "Normalise rewards by running mean and std.")
    whiten_advantages: bool = _f(True, "Normalise advantages within each batch.")
    entropy_coef: float = _f(0.0, "Entropy bonus (PPO-max leaves it at 0; always logged).", 0, 1e3)
    top_k: int = _f(0, "Sampling top-k (0 = off).", 0, 1_000_000)
    top_p: float = _f(1.0, "Sampling nucleus probability.", 0, 1)
    value_init: Literal["policy", "reward_model"] = _f(
        "policy", "Initialise the value model from the policy or from the (single) reward model."
    )
    # --- vLLM rollouts ---
    use_vllm: bool = _f(
        False,
        "Sample rollouts with a colocated vLLM engine (GPU worker with vllm installed); "
        "the policy's weights are loaded into it after every update.",
    )
    vllm_gpu_memory_utilization: float = _f(
        0.3, "Share of GPU memory the vLLM engine may take.", 0, 1
    )

    UNSUPPORTED_OPTIONS: ClassVar[tuple[str, ...]] = (
        "attn_implementation", "torch_compile", "use_liger_kernel", "optim", "num_train_epochs",
        "eval_steps", "early_stopping_patience",
    )  # fmt: skip

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if world_size != 1:
            raise ValueError("PPO runs in a single process; launch it without torchrun.")
        if self.strategy != "ddp":
            raise ValueError(
                "strategy: PPO runs in a single process without sharding; use strategy 'ddp'."
            )
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
        if self.top_p <= 0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.value_init not in ("policy", "reward_model"):
            raise ValueError("value_init must be 'policy' or 'reward_model'.")


@dataclass(kw_only=True)
class KTOConfig(PolicyConfig):
    """Kahneman-Tversky optimisation on unpaired desirable/undesirable completions (TRL
    KTOTrainer); preference and ranking snapshots are unpaired into such rows."""

    kind: ClassVar[str] = "kto"
    learning_rate: float = _f(1e-6, "Peak learning rate (TRL's KTO default).", 0, "learning_rate")
    beta: float = _f(0.1, "Strength of the implicit KL to the reference model.", 0, 1e3)
    desirable_weight: float = _f(1.0, "Loss weight of desirable rows.", 0, 1e3)
    undesirable_weight: float = _f(
        1.0, "Loss weight of undesirable rows (raise it when they are fewer).", 0, 1e3
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}.")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 for KTO (its KL estimate pairs rows).")
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ValueError("desirable_weight and undesirable_weight must be positive.")


@dataclass(kw_only=True)
class ORPOConfig(PolicyConfig):
    """Odds-ratio preference optimisation, reference-free (TRL's experimental ORPOTrainer)."""

    kind: ClassVar[str] = "orpo"
    learning_rate: float = _f(1e-6, "Peak learning rate (TRL's ORPO default).", 0, "learning_rate")
    beta: float = _f(0.1, "Weight of the odds-ratio term (lambda in the ORPO paper).", 0, 1e3)
    # --- Ranking snapshots ---
    ranking_pairs: Literal["all", "adjacent", "best_vs_rest"] = _f(
        "all",
        "How a ranking snapshot's K responses become pairs: all ordered pairs, adjacent "
        "ranks only, or the best against each other (ties are skipped).",
    )

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}.")


CONFIGS: dict[str, type[RunConfig]] = {
    c.kind: c
    for c in (RewardConfig, SFTConfig, DPOConfig, GRPOConfig, PPOConfig, KTOConfig, ORPOConfig)
}


def check_runtime(config: RunConfig, *, gpu: bool) -> None:
    """Refuse options this machine (``gpu``: it has a CUDA device) or its installed libraries
    cannot honour: flash attention, Liger kernels, 8-bit Adam, vLLM, experiment trackers. Looks
    packages up without importing them, so the web process can call it for a queue. Raises
    ConfigError."""
    from importlib.util import find_spec

    where = "this deployment" if gpu else "a CPU worker"

    def need(ok: bool, field: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{field}: {what} (not available on {where}).", field)

    if config.attn_implementation == "flash_attention_2":
        need(gpu and find_spec("flash_attn") is not None, "attn_implementation",
             "flash_attention_2 needs a CUDA GPU and the flash_attn package")  # fmt: skip
    if getattr(config, "padding_free", False):
        need(config.attn_implementation == "flash_attention_2", "padding_free",
             "padding_free needs attn_implementation flash_attention_2")  # fmt: skip
    if config.use_liger_kernel:
        need(find_spec("liger_kernel") is not None, "use_liger_kernel",
             "Liger kernels need the liger_kernel package (pip install liger-kernel)")  # fmt: skip
    if config.optim == "adamw_8bit":
        need(gpu and find_spec("bitsandbytes") is not None, "optim",
             "adamw_8bit needs a CUDA GPU and the bitsandbytes package")  # fmt: skip
    if getattr(config, "use_vllm", False):
        need(gpu and find_spec("vllm") is not None, "use_vllm",
             "vLLM rollouts need a CUDA GPU and the vllm package; the CPU path samples with "
             "transformers' generate (use_vllm=false)")  # fmt: skip
    for tracker in config.report_to or []:
        module, package = TRACKER_PACKAGES[tracker]
        need(find_spec(module) is not None, "report_to",
             f"{tracker} tracking needs the {package} package (pip install {package}, or leave "
             f"{tracker} out of report_to)")  # fmt: skip


STRATEGIES = ("ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")


def validate_strategy(strategy: str, offload_optimizer: bool, offload_params: bool) -> None:
    """Which CPU offload each strategy allows. Any process count works: one process with fsdp or
    DeepSpeed is the single-GPU offload case; the launcher always starts it under torchrun."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy == "ddp" and (offload_optimizer or offload_params):
        raise ValueError(
            "offload_optimizer / offload_params need strategy fsdp, deepspeed-zero2 or "
            "deepspeed-zero3 (ddp keeps everything on the device)."
        )
    if strategy == "fsdp" and offload_optimizer and not offload_params:
        raise ValueError(
            "offload_optimizer: fsdp offloads parameters, gradients and optimizer state together; "
            "set offload_params instead."
        )
    if strategy == "deepspeed-zero2" and offload_params:
        raise ValueError(
            "offload_params: ZeRO stage 2 does not partition parameters; use deepspeed-zero3 or "
            "fsdp, or offload only the optimizer."
        )


def validate_reward_spec(spec: dict[str, Any]) -> None:
    """Check one entry of ``rewards`` (see OnlineRLConfig.rewards): its keys, and every value's
    type and range (numbers finite, lists and strings bounded)."""
    if not isinstance(spec, dict) or spec.get("type") not in REWARD_TYPES:
        raise ConfigError(
            f"Each reward needs a 'type' in {REWARD_TYPES}, got {spec!r:.200}.", "rewards"
        )
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
        raise ConfigError(f"Unknown keys {sorted(extra)} for reward type {kind!r}.", "rewards")
    _number(spec.get("weight", 1.0), "rewards.weight", low=-1e3, high=1e3)
    if kind == "length":
        target = spec.get("target")
        if not isinstance(target, int) or isinstance(target, bool) or not 1 <= target <= 1_000_000:
            raise ConfigError(
                "Reward 'length' needs a positive integer 'target' (characters), at most 1000000.",
                "rewards.target",
            )
    if kind == "reward_model" and "model" in spec:
        _text(spec["model"], "rewards.model")
    if kind == "strings":
        if not (spec.get("required") or spec.get("forbidden")):
            raise ConfigError(
                "Reward 'strings' needs 'required' and/or 'forbidden' lists.", "rewards"
            )
        for key in ("required", "forbidden"):
            _texts(spec.get(key, []), f"rewards.{key}")
    if kind == "regex":
        pattern = spec.get("pattern", "")
        _text(pattern, "rewards.pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"Reward 'regex' has an invalid pattern: {exc}", "rewards.pattern"
            ) from exc
        if not pattern:
            raise ConfigError("Reward 'regex' needs a non-empty 'pattern'.", "rewards.pattern")
    if kind == "principles":
        _texts(spec.get("models", []), "rewards.models")
        if "weights" in spec and "priorities" in spec:
            raise ConfigError(
                "Reward 'principles' takes 'weights' or 'priorities', not both.", "rewards"
            )
        for key, low in (("weights", -1e3), ("priorities", 1)):
            values = spec.get(key, {})
            if not isinstance(values, dict) or len(values) > LIST_MAX_ITEMS:
                raise ConfigError(
                    f"rewards.{key} must be an object of at most {LIST_MAX_ITEMS} entries.",
                    f"rewards.{key}",
                )
            _texts(list(values), f"rewards.{key}")
            for value in values.values():
                if key == "priorities" and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ConfigError(
                        "Principle priorities must be integers >= 1 (1 = highest).",
                        "rewards.priorities",
                    )
                _number(value, f"rewards.{key}", low=low, high=1e3)


def from_dict(
    kind: str,
    values: dict[str, Any] | None = None,
    *,
    world_size: int = 1,
    limits: Limits | None = None,
) -> RunConfig:
    """Build and validate the config of ``kind`` from plain values, filling defaults.

    Every value is checked against its declared type and bounds (``limits``: the deployment's
    caps; numbers are finite, integers fit 64 bits) before any rule over several fields runs,
    so no value can reach arithmetic, the database or a trainer unchecked. Raises ConfigError.
    """
    if kind not in CONFIGS:
        raise ConfigError(f"Unknown training kind {kind!r}; choose from {KINDS}.")
    if values is not None and not isinstance(values, dict):
        raise ConfigError("config must be an object of field values.")
    cls = CONFIGS[kind]
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"Unknown {kind} config fields: {unknown}.")
    hints = typing.get_type_hints(cls)
    limits = limits or Limits()
    checked = {
        name: _checked(value, fields[name], hints[name], limits) for name, value in values.items()
    }
    config = cls(**checked)
    try:
        config.validate(world_size)
    except ConfigError:
        raise
    except ValueError as exc:  # a rule's message starts with the field it is mostly about
        first = re.match(r"\w+", str(exc))
        raise ConfigError(
            str(exc), first and first[0] if first and first[0] in fields else None
        ) from exc
    return config


def _checked(value: Any, spec: dataclasses.Field, hint: Any, limits: Limits) -> Any:
    """``value`` for ``spec`` if it has the declared type and lies within the bounds (an integral
    float for an int becomes an int), else ConfigError naming the field and the limit."""
    name, optional = spec.name, False
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must not be null.", name)
    low, high = spec.metadata.get("low"), spec.metadata.get("high")
    setting = None
    if isinstance(high, str):
        setting, high = Limits.SETTINGS[high], getattr(limits, high)
    origin = typing.get_origin(hint)
    if origin is Literal:
        options = typing.get_args(hint)
        if value not in options or not isinstance(value, str):
            raise ConfigError(
                f"{name} must be one of {', '.join(options)}, got {value!r:.100}.", name
            )
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be a boolean, got {value!r:.100}.", name)
        return value
    if hint is int or hint is float:
        number = _number(value, name, low=low, high=high, setting=setting, integer=hint is int)
        return int(number) if hint is int else float(number)
    if hint is str:
        return _text(value, name)
    if origin is list:
        if not isinstance(value, list) or len(value) > LIST_MAX_ITEMS:
            raise ConfigError(f"{name} must be a list of at most {LIST_MAX_ITEMS} entries.", name)
        (item,) = typing.get_args(hint)
        if item is str:
            return _texts(value, name)
        if item is float:
            return [float(_number(v, name, low=low, high=high)) for v in value]
        if not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{name} must be a list of objects.", name)
        return value
    raise ConfigError(f"{name} has an unsupported type.", name)  # pragma: no cover


def _number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    setting: str | None = None,
    integer: bool = False,
) -> int | float:
    """A finite int or float within [low, high] (an integer when ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r:.100}.", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}.", name)
    if integer and value != int(value):
        raise ConfigError(f"{name} must be an integer, got {value!r}.", name)
    high = INT64_MAX if high is None and integer else high
    if high is not None and value > high:
        where = f" ({setting})" if setting else ""
        raise ConfigError(f"{name} must be at most {high}{where}, got {_show(value)}.", name)
    if low is not None and value < low:
        raise ConfigError(f"{name} must be at least {low}, got {_show(value)}.", name)
    return value


def _show(value: int | float) -> str:
    """A number for a message (an integer of any size never becomes a float or a huge text)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > TEXT_MAX_CHARS:
        raise ConfigError(f"{name} must be a string of at most {TEXT_MAX_CHARS} characters.", name)
    return value


def _texts(values: Any, name: str) -> list[str]:
    if not isinstance(values, list) or len(values) > LIST_MAX_ITEMS:
        raise ConfigError(f"{name} must be a list of at most {LIST_MAX_ITEMS} strings.", name)
    return [_text(v, name) for v in values]


def describe_fields(kind: str, limits: Limits | None = None) -> list[dict[str, Any]]:
    """``[{name, type, default, help, minimum, maximum}]`` for ``kind``, in declaration order
    (forms, API docs); the bounds of numbers under ``limits`` (None where there is none)."""
    if kind not in CONFIGS:
        raise ConfigError(f"Unknown training kind {kind!r}; choose from {KINDS}.")
    defaults, limits = CONFIGS[kind](), limits or Limits()
    described = []
    for f in dataclasses.fields(defaults):
        high = f.metadata.get("high")
        high = getattr(limits, high) if isinstance(high, str) else high
        described.append(
            {
                "name": f.name,
                "type": str(f.type),
                "default": getattr(defaults, f.name),
                "help": f.metadata.get("help", ""),
                "minimum": f.metadata.get("low"),
                "maximum": high
                if high is not None and math.isfinite(high) and high < INT64_MAX
                else None,
            }
        )
    return described
