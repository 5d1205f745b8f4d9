"""The one check every training launch takes (the API, the launch form and ``manage.py train``
all go through ``services.launch_run``, which calls :func:`validate_launch`).

One function per family of fields, each raising :class:`LaunchRejected` that names the field
and the limit: :func:`check_processes`, :func:`check_config` (the kind's schema, bounded by the
deployment's ``TRAINING_MAX_*`` settings), :func:`check_base_model` (a builtin id, a registry
``name@version``, a hub ``org/name`` id, or a path under ``MODEL_ROOTS``), :func:`check_inputs`
(snapshot and reward model), then the launch-time checks of what the worker would only find
out later: :func:`check_devices` (QLoRA, sharding, bf16 / fp16 only where a GPU is),
:func:`check_base_exists`, :func:`check_snapshot_size`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from annotation.models import DatasetSnapshot
from common.errors import DomainError
from models_registry.models import ModelVersion
from training import strategies, trainers
from training.models import TrainingRun
from training.tiny import TINY_SPEC
from training.trainers.config import ConfigError, Limits, check_runtime

BUILTIN_MODELS = (TINY_SPEC,)
BASE_MODEL_MAX_CHARS = 500  # TrainingRun.base_model
NAME_MAX_CHARS = 200  # TrainingRun.name
STEPS_COLUMN_MAX = 2**31 - 1  # TrainingRun.max_steps (PositiveIntegerField)
PROCESSES_COLUMN_MAX = 2**15 - 1  # TrainingRun.num_processes (PositiveSmallIntegerField)
# A Hugging Face hub id, namespace/name: letters, digits, "-", "_", "." (not first or last), at
# most 96 characters each, no "--" or ".." (huggingface_hub's rules, org required).
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")
#: the snapshot kinds each run kind trains on (None: any snapshot with prompts); ranking
#: snapshots are expanded into pairs, preference and ranking ones unpaired for KTO
SNAPSHOT_KIND_FOR: dict[str, tuple[str, ...] | None] = {
    "reward": ("preference", "ranking"),
    "dpo": ("preference", "ranking"),
    "orpo": ("preference", "ranking"),
    "kto": ("kto", "preference", "ranking"),
    "sft": ("sft",),
    "grpo": None,
    "ppo": None,
}
#: the name a run's reward model has in the trainer's ``data["reward_models"]``
REWARD_MODEL_NAME = "reward"


class LaunchRejected(DomainError):
    """A launch request that cannot run; ``field`` names the input (``config.<name>`` for a
    config field)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field

    def body(self) -> dict:
        return {"detail": str(self), "field": self.field}


@dataclass(frozen=True)
class Launch:
    """A launch request that passed every check, ready to be stored."""

    kind: str
    config: trainers.RunConfig
    snapshot: DatasetSnapshot
    base_model: str
    base_model_version: ModelVersion | None
    reward_model_version: ModelVersion | None
    queue: str
    num_processes: int
    name: str


def limits() -> Limits:
    """The deployment's caps on config values (settings ``TRAINING_MAX_*``; steps never beyond
    what the run's column holds)."""
    return Limits(
        max_steps=min(settings.TRAINING_MAX_STEPS, STEPS_COLUMN_MAX),
        batch_size=settings.TRAINING_MAX_BATCH_SIZE,
        gradient_accumulation_steps=settings.TRAINING_MAX_GRADIENT_ACCUMULATION,
        max_length=settings.TRAINING_MAX_LENGTH,
        learning_rate=settings.TRAINING_MAX_LEARNING_RATE,
    )


def validate_launch(
    *,
    kind: str,
    config: object,
    snapshot: DatasetSnapshot | None,
    base_model: str,
    base_model_version: ModelVersion | None,
    reward_model_version: ModelVersion | None,
    queue: str,
    num_processes: object,
    name: str,
    principle_keys: list[str] | None = None,
) -> Launch:
    """Every check of a launch, in order; the first failure raises :class:`LaunchRejected`."""
    if kind not in TrainingRun.Kind.values:
        raise LaunchRejected(
            f"unknown run kind {kind!r:.50}; choose from {TrainingRun.Kind.values}", "kind"
        )
    if queue not in TrainingRun.Queue.values:
        raise LaunchRejected(
            f"unknown queue {queue!r:.50}; choose from {TrainingRun.Queue.values}", "queue"
        )
    if not isinstance(name, str) or len(name) > NAME_MAX_CHARS:
        raise LaunchRejected(f"name must be text of at most {NAME_MAX_CHARS} characters", "name")
    processes = check_processes(num_processes)
    run_config = check_config(kind, config, processes, queue)
    check_devices(run_config, queue)
    base_model, base_model_version = check_base_model(base_model, base_model_version)
    check_base_exists(base_model)
    snapshot = check_inputs(kind, snapshot, reward_model_version, run_config, principle_keys or [])
    check_snapshot_size(snapshot, run_config)
    return Launch(
        kind=kind,
        config=run_config,
        snapshot=snapshot,
        base_model=base_model,
        base_model_version=base_model_version,
        reward_model_version=reward_model_version,
        queue=queue,
        num_processes=processes,
        name=name,
    )


def check_processes(num_processes: object) -> int:
    """1 to ``TRAINING_MAX_PROCESSES`` (torchrun's ``--nproc_per_node``)."""
    cap = min(settings.TRAINING_MAX_PROCESSES, PROCESSES_COLUMN_MAX)
    if isinstance(num_processes, bool) or not isinstance(num_processes, int):
        raise LaunchRejected("num_processes must be an integer", "num_processes")
    if not 1 <= num_processes <= cap:
        raise LaunchRejected(
            f"num_processes must be between 1 and {cap} (TRAINING_MAX_PROCESSES)", "num_processes"
        )
    return num_processes


def check_config(
    kind: str, config: object, num_processes: int, queue: str = TrainingRun.Queue.CPU
) -> trainers.RunConfig:
    """The kind's schema with its defaults filled in (``report_to`` unset: the deployment's
    ``TRAINING_REPORT_TO``), every value typed and bounded, and the options the queue's workers
    cannot honour refused (``check_runtime``: a CPU queue has no CUDA; flash attention, Liger,
    8-bit Adam, vLLM and each tracker of ``report_to`` need their packages)."""
    values = dict(config) if isinstance(config, dict) else ({} if config is None else config)
    if isinstance(values, dict) and values.get("report_to") is None:
        values["report_to"] = list(settings.TRAINING_REPORT_TO)
    try:
        run_config = trainers.from_dict(kind, values, world_size=num_processes, limits=limits())
        check_runtime(run_config, gpu=queue == TrainingRun.Queue.GPU)
        return run_config
    except ConfigError as exc:
        raise LaunchRejected(str(exc), f"config.{exc.field}" if exc.field else "config") from exc


def check_devices(config: trainers.RunConfig, queue: str) -> None:
    """What only a GPU can do, refused on the ``cpu`` queue (its workers have none): QLoRA's
    4-bit base, sharded strategies (``training.strategies.CPU_REFUSAL``) and bf16 / fp16
    (``auto`` resolves on the worker). Whether a GPU worker has bitsandbytes is only known
    there; the worker fails such a run with the reason."""
    if queue != TrainingRun.Queue.CPU:
        return
    if config.peft == "qlora":
        raise LaunchRejected(
            "peft 'qlora' loads the base in 4-bit with bitsandbytes, which needs a CUDA GPU: "
            "launch it on the gpu queue, or use peft 'lora' on the cpu queue",
            "config.peft",
        )
    if config.strategy in strategies.SHARDED:
        raise LaunchRejected(
            strategies.CPU_REFUSAL.format(strategy=config.strategy), "config.strategy"
        )
    if config.precision in GPU_PRECISIONS:
        raise LaunchRejected(
            f"precision {config.precision} needs a GPU; the cpu queue's workers train in fp32 "
            "(choose auto or fp32, or the gpu queue)",
            "config.precision",
        )


def check_base_model(
    base_model: object, base_model_version: ModelVersion | None
) -> tuple[str, ModelVersion | None]:
    """(base model text, registered version): a version wins; otherwise ``base_model`` is a
    builtin id, a registry ``name@version`` (resolved to its version), a hub ``org/name`` id,
    or an absolute path that resolves (symlinks followed) inside one of ``MODEL_ROOTS``."""
    if base_model_version is not None:
        return "", base_model_version
    if not isinstance(base_model, str) or not base_model:
        raise LaunchRejected(
            "give a base model (builtin:tiny, name@version, a hub id or a path) or a version",
            "base_model",
        )
    if len(base_model) > BASE_MODEL_MAX_CHARS:
        raise LaunchRejected(
            f"base_model must be at most {BASE_MODEL_MAX_CHARS} characters", "base_model"
        )
    if base_model.startswith("builtin:"):
        if base_model not in BUILTIN_MODELS:
            raise LaunchRejected(
                f"unknown builtin model; choose from {', '.join(BUILTIN_MODELS)}", "base_model"
            )
        return base_model, None
    if base_model.startswith("/"):
        return str(model_path(base_model, "base_model")), None
    if "@" in base_model:
        return "", registered_version(base_model, "base_model")
    if HUB_ID.fullmatch(base_model) and ".." not in base_model and "--" not in base_model:
        if Path(base_model).exists():  # transformers would load this relative path, not the hub
            raise LaunchRejected(
                f"{base_model!r} names a local path; give it as an absolute path under a "
                "model root",
                "base_model",
            )
        return base_model, None
    raise LaunchRejected(
        "base_model must be builtin:tiny, a registered name@version, a hub id (org/name) or an "
        "absolute path under a model root (MODEL_ROOTS)",
        "base_model",
    )


def model_path(value: str, field: str) -> Path:
    """``value`` resolved (symlinks followed) if it lies inside one of ``MODEL_ROOTS``."""
    try:
        resolved = Path(value).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise LaunchRejected(f"{field} is not a usable path: {exc}", field) from exc
    roots = [Path(root).resolve() for root in settings.MODEL_ROOTS]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise LaunchRejected(
            f"{field} must be a path inside a model root (MODEL_ROOTS: "
            f"{', '.join(str(r) for r in roots) or 'none'})",
            field,
        )
    return resolved


def registered_version(ref: str, field: str) -> ModelVersion:
    """The registered version a ``name@version`` reference names."""
    name, _, number = ref.rpartition("@")
    if not name or not number.isdigit() or len(number) > 9:
        raise LaunchRejected(f"{field} {ref!r:.200} is not a name@version reference", field)
    version = (
        ModelVersion.objects.select_related("registered_model")
        .filter(registered_model__name=name, version=int(number))
        .first()
    )
    if version is None:
        raise LaunchRejected(f"no model version {ref!r:.200} is registered", field)
    return version


def check_inputs(
    kind: str,
    snapshot: DatasetSnapshot | None,
    reward_model_version: ModelVersion | None,
    config: trainers.RunConfig,
    principle_keys: list[str] = (),
) -> DatasetSnapshot:
    """The snapshot fits the kind; a reward model is given when the config uses one, is a
    reward model, and is the only one the config's rewards name, besides the principle reward
    models of a precedence (``principle_keys``)."""
    if snapshot is None:
        raise LaunchRejected(f"a {kind} run needs a dataset snapshot", "snapshot")
    if snapshot.status != DatasetSnapshot.Status.READY:
        raise LaunchRejected(f"snapshot {snapshot.pk} is {snapshot.status}, not ready", "snapshot")
    wanted = SNAPSHOT_KIND_FOR[kind]
    if wanted and snapshot.kind not in wanted:
        raise LaunchRejected(
            f"a {kind} run needs a {' or '.join(wanted)} snapshot, not {snapshot.kind}", "snapshot"
        )
    rewards = getattr(config, "rewards", None) or []
    uses_reward_model = any(spec["type"] in ("reward_model", "principles") for spec in rewards)
    if uses_reward_model and reward_model_version is None and not principle_keys:
        raise LaunchRejected(
            f"this {kind} run needs a reward model version", "reward_model_version"
        )
    if getattr(config, "value_init", None) == "reward_model" and not uses_reward_model:
        raise LaunchRejected(
            "value_init='reward_model' needs a reward_model entry in rewards (and its version)",
            "config.value_init",
        )
    if reward_model_version and reward_model_version.registered_model.kind != "reward":
        raise LaunchRejected(
            f"{reward_model_version} is not a reward model", "reward_model_version"
        )
    named = {spec.get("model") for spec in rewards} | {
        model for spec in rewards for model in spec.get("models", [])
    }
    unknown = sorted(named - {None, REWARD_MODEL_NAME, *principle_keys})
    if unknown:
        raise LaunchRejected(
            f"rewards name reward models {unknown}; a run has one, named {REWARD_MODEL_NAME!r} "
            "(give it as reward_model_version)",
            "config.rewards",
        )
    return snapshot


# --- launch-time checks (issue 18): what the worker would only find out later ---------------

#: precisions a CPU worker cannot train in (the ``cpu`` queue's workers have no GPU)
GPU_PRECISIONS = ("bf16", "fp16")


def check_base_exists(base_model: str) -> None:
    """The base model can be loaded where the run will train: a local path exists (it already
    lies under ``MODEL_ROOTS``); a hub id, when the deployment is offline (``HF_HUB_OFFLINE``,
    the workers' default), is already in the local Hugging Face cache. A registered version
    and ``builtin:tiny`` always exist."""
    if base_model.startswith("/"):
        if not Path(base_model).exists():
            raise LaunchRejected(
                f"base model path {base_model!r:.300} does not exist (it must be a model "
                "directory under MODEL_ROOTS)",
                "base_model",
            )
        return
    if HUB_ID.fullmatch(base_model) and settings.HF_HUB_OFFLINE and not hub_cached(base_model):
        raise LaunchRejected(
            f"{base_model!r} is not in the local Hugging Face cache and downloads are off "
            "(HF_HUB_OFFLINE=1): download it first, give a path under MODEL_ROOTS, or set "
            "HF_HUB_OFFLINE=0 on the deployment",
            "base_model",
        )


def hub_cached(repo_id: str) -> bool:
    """The hub model ``repo_id`` has a config in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def check_snapshot_size(snapshot: DatasetSnapshot, config: trainers.RunConfig) -> None:
    """The snapshot has rows to train on, and enough to hold some out when ``eval_fraction``
    asks for an evaluation (the split of ``trainers.common.split_rows``)."""
    rows = snapshot.row_count
    if rows < 1:
        raise LaunchRejected(f"snapshot {snapshot.pk} has no rows: nothing to train on", "snapshot")
    if config.eval_fraction > 0 and rows < 2:
        raise LaunchRejected(
            f"snapshot {snapshot.pk} has {rows} row: eval_fraction {config.eval_fraction} "
            "holds out none of it (set eval_fraction to 0, or use at least 2 rows)",
            "config.eval_fraction",
        )
