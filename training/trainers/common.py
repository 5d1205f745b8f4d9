"""Pieces every training kind shares: hooks, results, artifacts, model loading, data shaping.

Importing this module is cheap (stdlib only); torch/transformers are imported inside the
functions that need them, so a Celery parent process never initialises torch before forking.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from models_registry import adapters
from training import strategies
from training.tiny import TINY_SPEC, save_tiny

if TYPE_CHECKING:
    from training.trainers.config import PolicyConfig, RunConfig

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
logger = logging.getLogger(__name__)

Row = dict[str, Any]
Message = dict[str, str]
Text = str | list[Message]  # a prompt or completion: plain text or chat messages
# (prompts, completions) -> one score per pair. Reward models, verifiers and mixtures all fit.
Scorer = Callable[[Sequence[Text], Sequence[Text]], list[float]]


def _ignore_metrics(step: int, max_steps: int, logs: dict[str, float]) -> None:
    """Default ``on_metrics`` hook: do nothing."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Hooks:
    """Plain callbacks from a run. Called on the main process only."""

    on_metrics: Callable[[int, int, dict[str, float]], None] = _ignore_metrics
    should_cancel: Callable[[], bool] = _never


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    size_bytes: int


@dataclass
class TrainingResult:
    """What a run produced. ``artifact_path`` is None when the run was cancelled."""

    metrics: dict[str, Any]
    artifact_path: Path | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    eval: dict[str, Any] = field(default_factory=dict)
    global_step: int = 0
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "artifact_path": self.artifact_path and str(self.artifact_path)}


@dataclass
class RunContext:
    """One run's inputs and working paths.

    ``work_dir`` holds checkpoints (and a built ``builtin:tiny`` base); it survives failures and
    cancellation so a later run with the same paths resumes, and is removed after success.
    """

    config: RunConfig
    data: dict[str, Any]
    output_dir: Path
    work_dir: Path
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    @property
    def reward_models(self) -> dict[str, str]:
        return dict(self.data.get("reward_models") or {})

    def base_model_path(self, head: Literal["causal_lm", "reward"] = "causal_lm") -> str:
        """Path or hub id of the base model; ``builtin:tiny`` is built once into ``work_dir``."""
        spec = self.data.get("base_model")
        if not spec:
            raise ValueError("data['base_model'] is required (a path, a hub id or 'builtin:tiny').")
        if spec != TINY_SPEC:
            return str(spec)
        path = self.work_dir / f"base-{head}"
        if not path.exists():
            # Every rank of a torchrun job may get here: build privately, then rename. The
            # build is deterministic, so whichever rank renames first wins and the rest discard.
            rows = [*self.data.get("rows", []), *(self.data.get("eval_rows") or [])]
            staging = path.with_name(f".{path.name}.{os.getpid()}")
            save_tiny(staging, texts=list(corpus_texts(rows)), seed=self.config.seed, head=head)
            try:
                os.replace(staging, path)
            except OSError:
                shutil.rmtree(staging)
        return str(path)


# --- artifacts -------------------------------------------------------------------------------


def directory_digest(directory: Path) -> tuple[str, int]:
    """sha256 and total size of every file under ``directory``.

    The digest is the sha256 of a ``sha256sum``-style manifest ("<file sha256>  <relative path>"
    per line, sorted by relative POSIX path), so it is reproducible with standard tools.
    """
    lines, size = [], 0
    files = (p for p in directory.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.relative_to(directory).as_posix()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {path.relative_to(directory).as_posix()}\n")
        size += path.stat().st_size
    return hashlib.sha256("".join(lines).encode()).hexdigest(), size


def write_artifact(
    dest: str | Path,
    save: Callable[[Path], None],
    *,
    main_process: bool = True,
    barrier: Callable[[], None] = lambda: None,
) -> Artifact | None:
    """Save into a staging dir next to ``dest``, hash it, then rename it into place.

    ``save(staging_dir)`` writes the files. A failure removes the staging dir and leaves ``dest``
    untouched; an existing ``dest`` is swapped out only after the new one is complete. In a
    multi-process run every rank calls this (so sharded saves can gather) with the same ``dest``;
    only the main process hashes and renames, and only it gets the Artifact back.
    """
    dest = Path(dest)
    staging = dest.with_name(f".{dest.name}.partial")
    if main_process:
        shutil.rmtree(staging, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
    barrier()
    try:
        save(staging)
        barrier()
        if not main_process:
            return None
        sha256, size = directory_digest(staging)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            try:
                os.replace(staging, dest)
            except OSError:
                os.replace(old, dest)
                raise
            shutil.rmtree(old)
        else:
            os.replace(staging, dest)
    except BaseException:
        if main_process:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return Artifact(dest, sha256, size)


def write_run_info(directory: Path, kind: str, ctx: RunContext) -> None:
    """Record what shaped the artifact (kind, config, inputs, library versions) in the artifact."""
    import torch
    import transformers
    import trl

    info = {
        "kind": kind,
        "config": ctx.config.to_dict(),
        "base_model": ctx.data.get("base_model"),
        "reference_model": ctx.data.get("reference_model"),
        "reward_models": ctx.reward_models,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
    }
    (directory / "training_run.json").write_text(json.dumps(info, indent=2, sort_keys=True))


# --- checkpoints ---------------------------------------------------------------------------------


def last_checkpoint(directory: Path, marker: str = "trainer_state.json") -> str | None:
    """The highest complete ``checkpoint-N`` under ``directory`` (it holds ``marker``), if any."""
    if not directory.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in directory.iterdir()
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / marker).exists()
    ]
    return str(max(found)[1]) if found else None


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def default_device() -> str:
    """This process's GPU under torchrun (``LOCAL_RANK``), else the first GPU, else the CPU."""
    import torch

    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"


# --- devices and TRL arguments -------------------------------------------------------------------


def resolve_device_settings(config: RunConfig) -> dict[str, Any]:
    """Resolve ``auto`` precision and activation checkpointing for this machine."""
    import torch

    cuda = torch.cuda.is_available()
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision != "fp32" and not cuda:
        raise ValueError(f"precision {precision!r} needs a GPU; use 'fp32' or 'auto' on CPU.")
    if config.strategy in strategies.SHARDED and not cuda:
        raise ValueError(strategies.CPU_REFUSAL.format(strategy=config.strategy))
    checkpointing = config.activation_checkpointing
    return {
        "cuda": cuda,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "activation_checkpointing": cuda if checkpointing is None else checkpointing,
    }


def trl_arguments(
    config: RunConfig, checkpoint_dir: Path, *, train_rows: int | None = None
) -> dict[str, Any]:
    """Keyword arguments shared by every TRL config class (they all subclass TrainingArguments).

    ``train_rows``: how many training rows there are, to turn ``num_train_epochs`` into steps.
    """
    device = resolve_device_settings(config)
    return {
        "output_dir": str(checkpoint_dir),
        "max_steps": run_steps(config, train_rows),
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        # transformers 5 folded warmup_ratio into warmup_steps: a float in [0, 1) is a ratio
        "warmup_steps": config.warmup_steps if config.warmup_ratio is None else config.warmup_ratio,
        "max_grad_norm": config.max_grad_norm,
        "seed": config.seed,
        "logging_steps": config.logging_steps,
        "bf16": device["bf16"],
        "fp16": device["fp16"],
        "use_cpu": not device["cuda"],
        **strategies.trainer_arguments(config, device["activation_checkpointing"]),
        "save_strategy": "steps" if config.save_steps else "no",
        **({"save_steps": config.save_steps} if config.save_steps else {}),
        "save_total_limit": config.save_total_limit,
        "report_to": list(config.report_to) if config.report_to else "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        **trainer_options(config),
    }


def run_steps(config: RunConfig, train_rows: int | None) -> int:
    """Optimizer steps of the run: ``max_steps`` stays the stop; with ``num_train_epochs`` the run
    ends earlier when that many passes over ``train_rows`` take fewer steps (GRPO: each prompt
    yields ``num_generations`` of the rows a step consumes)."""
    if config.num_train_epochs is None or not train_rows:
        return config.max_steps
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = config.batch_size * config.gradient_accumulation_steps * world
    per_step /= getattr(config, "num_generations", 1)
    return max(1, min(config.max_steps, math.ceil(config.num_train_epochs * train_rows / per_step)))


def trainer_options(config: RunConfig) -> dict[str, Any]:
    """The ``# --- Trainer options ---`` fields as TrainingArguments keywords (optimizer, compile,
    Liger kernels, in-training evaluation on the held-out rows)."""
    options: dict[str, Any] = {
        "optim": config.optim,
        "weight_decay": config.weight_decay,
        "torch_compile": config.torch_compile,
        "use_liger_kernel": config.use_liger_kernel,
    }
    if config.eval_steps:
        metric = config.metric_for_best_model
        options |= {
            "eval_strategy": "steps",
            "eval_steps": config.eval_steps,
            "per_device_eval_batch_size": config.batch_size,
            "metric_for_best_model": metric,
            "greater_is_better": "loss" not in metric,
        }
    return options


# --- models --------------------------------------------------------------------------------------


def load_tokenizer(path: str):
    """A tokenizer with a pad token (EOS when it has none) from a path or hub id."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _dtype(trainable: bool) -> str:
    # transformers 5 loads in the checkpoint's dtype ("auto"), often bf16 on the hub. Trained
    # weights stay fp32 (mixed precision autocasts the compute); frozen models keep "auto".
    return "float32" if trainable else "auto"


def load_causal_lm(path: str, *, trainable: bool = False, **options: Any):
    """A causal LM from full weights or an adapter artifact (merged into its base: a run that
    starts from an adapter version trains the merged model). ``options`` go to
    ``from_pretrained`` (QLoRA's 4-bit quantisation)."""
    from transformers import AutoModelForCausalLM

    return adapters.load_model(
        path,
        lambda p: AutoModelForCausalLM.from_pretrained(p, dtype=_dtype(trainable), **options),
    )


def load_sequence_classifier(path: str, tokenizer, *, trainable: bool = False, **options: Any):
    """A scalar-head model (``num_labels=1``); a causal-LM checkpoint gets a fresh head. An
    adapter artifact is merged into its base (its trained head included)."""
    from transformers import AutoModelForSequenceClassification

    model = adapters.load_model(
        path,
        lambda p: AutoModelForSequenceClassification.from_pretrained(
            p, num_labels=1, dtype=_dtype(trainable), **options
        ),
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_model_config(path: str):
    """The transformers config of a model directory or hub id; an adapter's is its base's."""
    from transformers import AutoConfig

    for _ in range(adapters.MAX_DEPTH):
        if not adapters.is_adapter(path):
            break
        path = adapters.adapter_base(path)
    return AutoConfig.from_pretrained(path)


def max_positions(model_config) -> int | None:
    """The longest sequence the model's position embeddings allow, when it has a limit."""
    for name in ("max_position_embeddings", "n_positions"):
        if getattr(model_config, name, None):
            return int(getattr(model_config, name))
    return None


def sequence_limit(config: RunConfig, model_config) -> int:
    """``max_length``, capped by what the model's position embeddings allow."""
    return min(config.max_length, max_positions(model_config) or config.max_length)


def prompt_budget(config: PolicyConfig, model_config) -> int:
    """Most prompt tokens that leave room for ``max_completion_length`` new tokens."""
    limit = sequence_limit(config, model_config)
    budget = limit - config.max_completion_length
    if budget < 1:
        raise ValueError(
            f"max_completion_length ({config.max_completion_length}) leaves no room for a prompt "
            f"within {limit} tokens."
        )
    return budget


# --- data shaping --------------------------------------------------------------------------------


def render_prompt(tokenizer, prompt: Text) -> str:
    """Prompt text for a causal LM: strings pass through; chat messages use the chat template."""
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    turns = "".join(f"{m['role']}: {m['content']}\n" for m in prompt)
    return f"{turns}assistant: "


def completion_text(completion: Text) -> str:
    """A completion as text (an assistant message list is joined)."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion)


def prompt_of(row: Row) -> Text:
    """The prompt of a preference, prompt or SFT row (SFT: messages before the last reply)."""
    if "prompt" in row:
        return row["prompt"]
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def fitting_prompts(tokenizer, rows: list[Row], max_tokens: int) -> list[Text]:
    """The rows' prompts whose rendered form fits ``max_tokens``; raises if none does."""

    def length(prompt: Text) -> int:
        text = render_prompt(tokenizer, prompt)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompts = [row["prompt"] for row in rows if length(row["prompt"]) <= max_tokens]
    if not prompts:
        raise ValueError(f"No prompt fits in {max_tokens} tokens.")
    return prompts


def corpus_texts(rows: Iterable[Row]) -> Iterable[str]:
    """Every string in the rows' text fields (the builtin tokenizer learns the project's text)."""
    for row in rows:
        for key in ("prompt", "chosen", "rejected", "completion", "messages"):
            value = row.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from (m["content"] for m in value if isinstance(m, dict))


def split_rows(
    rows: list[Row], eval_rows: list[Row] | None, fraction: float, seed: int
) -> tuple[list[Row], list[Row]]:
    """Training and held-out rows: explicit ``eval_rows`` win, else a seeded ``fraction`` split."""
    if not rows:
        raise ValueError("data['rows'] is empty: nothing to train on.")
    if eval_rows is not None:
        return list(rows), list(eval_rows)
    if fraction == 0 or len(rows) < 2:
        return list(rows), []
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    n_eval = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    return shuffled[n_eval:], shuffled[:n_eval]


def guarded_evaluation(evaluate: Callable[[Path], dict[str, Any]], path: Path) -> dict[str, Any]:
    """Run ``evaluate(path)``; a failure is reported in the result instead of failing the run
    (the artifact is already published and sound)."""
    try:
        return evaluate(path)
    except Exception as exc:
        logger.exception("Evaluation of %s failed", path)
        return {"error": f"{type(exc).__name__}: {exc}"}


def summarize_logs(log_history: list[dict[str, float]]) -> dict[str, Any]:
    """Last value of every logged metric (step logs and the final train summary merged)."""
    summary: dict[str, Any] = {}
    for entry in log_history:
        summary.update(entry)
    return summary


def finish_training(
    kind: str,
    ctx: RunContext,
    *,
    log_history: list[dict[str, float]],
    world_size: int,
    global_step: int,
    cancelled: bool,
    save: Callable[[Path], None],
    evaluate: Callable[[Path], dict[str, Any]],
    main_process: bool = True,
    barrier: Callable[[], None] = lambda: None,
) -> TrainingResult:
    """The end every kind shares, once training has stopped: the metrics (last logged values and
    the world size); a cancelled run stops there. Otherwise publish the artifact (``save`` writes
    the model and runs on every rank; the main process adds the run info), evaluate it, and drop
    the checkpoints. A process other than the main one returns the metrics only."""
    metrics = {**summarize_logs(log_history), "world_size": world_size}
    if cancelled:
        return TrainingResult(metrics=metrics, global_step=global_step, cancelled=True)

    def save_with_info(directory: Path) -> None:
        save(directory)
        if main_process:
            write_run_info(directory, kind, ctx)
            if adapters.is_adapter(directory) and ctx.data.get("base_model") == TINY_SPEC:
                # builtin:tiny's base lives in work_dir, removed below: the adapter keeps it
                head = "reward" if kind == "reward" else "causal_lm"
                shutil.copytree(ctx.base_model_path(head), directory / adapters.BUNDLED_BASE)

    artifact = write_artifact(
        ctx.output_dir, save_with_info, main_process=main_process, barrier=barrier
    )
    if artifact is None:  # not the main process: rank 0 reports
        return TrainingResult(metrics=metrics, global_step=global_step)
    report = guarded_evaluation(evaluate, artifact.path)
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    return TrainingResult(
        metrics=metrics,
        artifact_path=artifact.path,
        sha256=artifact.sha256,
        size_bytes=artifact.size_bytes,
        eval=report,
        global_step=global_step,
    )
