"""Write paths for the registry: register versions with their lineage, move stages, queue the
closed loop's generation job and (re)profiling on a worker.

The registry never imports ``training``: jobs that need torch are sent to Celery by task name
(``training.generate_candidates``, ``training.profile_model_version``) and run in a worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import DatasetSnapshot, PrincipleSet, Project
from common import background
from common.errors import DomainError
from models_registry import adapters, profiles, storage
from models_registry.cards import refresh_model_card
from models_registry.models import (
    GenerationJob,
    ModelParent,
    ModelVersion,
    RegisteredModel,
    StageChange,
)

Stage = ModelVersion.Stage
EXCLUSIVE_STAGES = (Stage.STAGING, Stage.PRODUCTION)
PROFILE_METHODS = ("auto", "reward-model", "policy-logprob", "policy-logprob-ratio")
GENERATION_QUEUES = ("cpu", "gpu")
ENGINES = ("auto", "transformers", "vllm")


@transaction.atomic
def register_model_version(
    *,
    name: str,
    kind: str,
    artifact_uri: str,
    sha256: str,
    size_bytes: int,
    parents: dict[str, ModelVersion | list[ModelVersion] | None] | None = None,
    dataset_snapshot: DatasetSnapshot | None = None,
    principle_set: PrincipleSet | None = None,
    eval_metrics: dict | None = None,
    annotator_contributions: dict | None = None,
    data_discretion_profile: dict | None = None,
    model_discretion_profile: dict | None = None,
    precedence: dict | None = None,
    description: str = "",
) -> ModelVersion:
    """The next version of ``name`` (created on first use) with its lineage edges.

    ``parents`` maps a role (base / reference / reward) to the version (or versions: a policy
    trained to a precedence has a reward parent per principle) that played it. Unless
    given, the annotator contributions and the discretion profile of the training data are
    computed from ``dataset_snapshot`` (a failure is recorded on the version, never raised);
    the version gets its model annotator and a model card. The model's own discretion profile
    is measured later by a worker (``training.generation.profile_version``).
    """
    if kind not in RegisteredModel.Kind.values:
        raise DomainError(f"unknown model kind {kind!r}; choose from {RegisteredModel.Kind.values}")
    registered, _ = RegisteredModel.objects.get_or_create(
        name=name, defaults={"kind": kind, "description": description}
    )
    registered = RegisteredModel.objects.select_for_update().get(pk=registered.pk)
    latest = registered.versions.aggregate(v=Max("version"))["v"] or 0
    facts = None
    if dataset_snapshot is not None and (
        annotator_contributions is None or data_discretion_profile is None
    ):
        facts = profiles.safe(lambda: {"facts": profiles.snapshot_facts(dataset_snapshot)})
        facts = facts.get("facts")
    if annotator_contributions is None:
        annotator_contributions = profiles.safe(
            profiles.annotator_contributions, dataset_snapshot, facts
        )
    if data_discretion_profile is None:
        data_discretion_profile = profiles.safe(
            profiles.data_discretion_profile, dataset_snapshot, facts
        )
    version = ModelVersion.objects.create(
        registered_model=registered,
        version=latest + 1,
        artifact_uri=artifact_uri,
        artifact_format=artifact_format(artifact_uri, sha256),
        sha256=sha256,
        size_bytes=size_bytes,
        dataset_snapshot=dataset_snapshot,
        principle_set=principle_set or (dataset_snapshot and dataset_snapshot.principle_set),
        eval_metrics=eval_metrics or {},
        annotator_contributions=annotator_contributions or {},
        data_discretion_profile=data_discretion_profile or {},
        model_discretion_profile=model_discretion_profile or {},
        precedence=precedence or {},
    )
    edges = {
        (role, parent.pk): ModelParent(child=version, parent=parent, role=role)
        for role, played in (parents or {}).items()
        for parent in (played if isinstance(played, list) else [played])
        if parent is not None
    }
    ModelParent.objects.bulk_create(edges.values())
    profiles.ensure_annotator(version)
    refresh_model_card(version)
    return version


# ---------------------------------------------------------------- registering from the API


def _inside_artifacts(path: Path) -> bool:
    root = Path(settings.ARTIFACT_ROOT).resolve()
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def local_artifact(uri: str) -> Path | None:
    """The artifact directory or file of ``uri`` when it is local and under ``ARTIFACT_ROOT``
    (downloads never read anything else), else None."""
    if not uri:
        return None
    raw = uri[len("file://") :] if uri.startswith("file://") else uri
    if "://" in raw:
        return None
    path = Path(raw)
    if not path.is_absolute():
        path = Path(settings.ARTIFACT_ROOT) / path
    return path if path.exists() and _inside_artifacts(path) else None


def artifact_format(uri: str, sha256: str) -> str:
    """``adapter`` when the artifact (local, or committed to the object store) holds a PEFT
    adapter's ``adapter_config.json``, else ``full``."""
    local = local_artifact(uri)
    if local is not None:
        is_adapter = adapters.is_adapter(local)
    else:
        files = storage.read_manifest(uri, sha256) if storage.in_store(uri) else []
        is_adapter = any(rel == adapters.ADAPTER_CONFIG for _, rel in files)
    return ModelVersion.ArtifactFormat.ADAPTER if is_adapter else ModelVersion.ArtifactFormat.FULL


def artifact_location(uri: str) -> Path | str | None:
    """Where a download of ``uri`` reads from: a local path under ``ARTIFACT_ROOT``, or a URL
    in the configured object store (``storage.in_store``); None for anything else."""
    if storage.in_store(uri):
        return uri
    return local_artifact(uri)


def artifact_digest(path: Path) -> tuple[str, int]:
    """sha256 of a ``sha256sum``-style manifest (sorted relative paths) and the total size —
    the digest training writes for its artifacts."""
    text, size = storage.manifest(path)
    return storage.digest(text), size


def register_from_source(
    *,
    name: str,
    kind: str,
    source: str,
    description: str = "",
    parents: Iterable[tuple[str, ModelVersion]] = (),
    dataset_snapshot: DatasetSnapshot | None = None,
    eval_metrics: dict | None = None,
    sha256: str = "",
) -> ModelVersion:
    """MLflow's "create model version": ``source`` is a path under ``ARTIFACT_ROOT`` (hashed
    here) or a remote URI (``hf://``, ``s3://`` … recorded as given)."""
    source = (source or "").strip()
    if not source:
        raise DomainError("source (the artifact location) is required")
    remote = "://" in source and not source.startswith("file://")
    size = 0
    if not remote:
        path = local_artifact(source)
        if path is None:
            raise DomainError(
                "source must be an existing path under the artifact root, or a remote URI"
            )
        sha256, size = artifact_digest(path)
        source = str(path.resolve())
    elif sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
        raise DomainError("sha256 must be 64 lowercase hex digits")
    existing = RegisteredModel.objects.filter(name=name).values_list("kind", flat=True).first()
    if existing and existing != kind:
        raise DomainError(f"{name} is a {existing} model, not {kind}")
    by_role: dict[str, ModelVersion] = {}
    for role, parent in parents:
        if role not in {r.value for r in ModelParent.Role}:
            raise DomainError(f"unknown parent role {role!r}")
        by_role[role] = parent
    return register_model_version(
        name=name,
        kind=kind,
        artifact_uri=source,
        sha256=sha256,
        size_bytes=size,
        parents=by_role,
        dataset_snapshot=dataset_snapshot,
        eval_metrics=eval_metrics,
        description=description,
    )


# ---------------------------------------------------------------- stages


@transaction.atomic
def set_stage(
    version: ModelVersion,
    stage: str,
    user=None,
    note: str = "",
    *,
    archive_existing: bool = False,
) -> ModelVersion:
    """Move ``version`` to ``stage`` and log who did it. ``archive_existing`` (MLflow's
    ``archive_existing_versions``) archives the model's other versions in that stage."""
    if stage not in Stage.values:
        raise DomainError(f"unknown stage {stage!r}; choose from {', '.join(Stage.values)}")
    given = version
    locked = ModelVersion.objects.select_for_update().select_related("registered_model")
    version = locked.get(pk=version.pk)
    note = (note or "")[:2000]
    if archive_existing and stage in EXCLUSIVE_STAGES:
        others = locked.filter(registered_model=version.registered_model, stage=stage).exclude(
            pk=version.pk
        )
        for other in others:
            StageChange.objects.create(
                model_version=other,
                from_stage=other.stage,
                to_stage=Stage.ARCHIVED,
                changed_by=user,
                note=f"archived: version {version.version} moved to {stage}",
            )
            other.stage = Stage.ARCHIVED
            other.save(update_fields=["stage"])
    if version.stage != stage:
        StageChange.objects.create(
            model_version=version,
            from_stage=version.stage,
            to_stage=stage,
            changed_by=user,
            note=note,
        )
        version.stage = stage
        version.save(update_fields=["stage"])
        refresh_model_card(version)
    given.stage = version.stage
    return version


# ---------------------------------------------------------------- worker jobs (by task name)


@transaction.atomic
def request_generation(
    *,
    project: Project,
    versions: list[ModelVersion],
    samples_per_model: int = 2,
    max_prompts: int = 50,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    engine: str = "auto",
    queue: str = "cpu",
    created_by=None,
) -> GenerationJob:
    """Queue the closed loop's "generate candidates" job: each version samples
    ``samples_per_model`` responses per prompt of ``project``; every prompt gets one task over
    all its new responses (compare when there are two, rank when more)."""
    if not versions:
        raise DomainError("choose at least one registered model version")
    if any(v.registered_model.kind == RegisteredModel.Kind.REWARD for v in versions):
        raise DomainError("a reward model cannot generate responses; choose policies")
    if len({v.pk for v in versions}) != len(versions):
        raise DomainError("each model version may appear once")
    if not 1 <= samples_per_model <= 16:
        raise DomainError("samples_per_model must be between 1 and 16")
    total = samples_per_model * len(versions)
    if not 2 <= total <= 16:
        raise DomainError("each task needs 2 to 16 responses (samples × models)")
    if not 1 <= max_prompts <= 100_000:
        raise DomainError("max_prompts must be between 1 and 100000")
    if not 1 <= max_new_tokens <= 4096:
        raise DomainError("max_new_tokens must be between 1 and 4096")
    if not 0 < temperature <= 5 or not 0 < top_p <= 1:
        raise DomainError("temperature must be in (0, 5] and top_p in (0, 1]")
    if engine not in ENGINES:
        raise DomainError(f"engine must be one of {', '.join(ENGINES)}")
    if queue not in GENERATION_QUEUES:
        raise DomainError(f"queue must be one of {', '.join(GENERATION_QUEUES)}")
    if not project.prompts.exists():
        raise DomainError(f"project {project.slug} has no prompts")
    job = GenerationJob.objects.create(
        project=project,
        params={
            "samples_per_model": samples_per_model,
            "max_prompts": max_prompts,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "engine": engine,
        },
        queue=queue,
        created_by=created_by,
    )
    job.model_versions.set(versions)

    def fail(message: str) -> None:
        GenerationJob.objects.filter(pk=job.pk).update(
            status=GenerationJob.Status.FAILED, error=message, finished_at=timezone.now()
        )

    def send() -> None:
        result = background.send_or_fail(
            "training.generate_candidates",
            job.pk,
            queue=queue,
            what=f"generation job {job.pk}",
            fail=fail,
        )
        GenerationJob.objects.filter(pk=job.pk).update(celery_task_id=result.id or "")

    transaction.on_commit(send)
    return job


def request_profile(
    *,
    version: ModelVersion,
    probe_project: Project | None = None,
    method: str = "auto",
    reward_version: ModelVersion | None = None,
    queue: str = "cpu",
) -> None:
    """(Re)measure the version's own discretion on a worker, optionally on a chosen probe
    project and, for a policy, through a chosen reward model."""
    if method not in PROFILE_METHODS:
        raise DomainError(f"method must be one of {', '.join(PROFILE_METHODS)}")
    kind = version.registered_model.kind
    if kind == RegisteredModel.Kind.REWARD and method not in ("auto", "reward-model"):
        raise DomainError("a reward model is profiled through its own scores (reward-model)")
    if reward_version is not None:
        if reward_version.registered_model.kind != RegisteredModel.Kind.REWARD:
            raise DomainError(f"{reward_version} is not a reward model")
        if kind == RegisteredModel.Kind.REWARD:
            raise DomainError("a reward model is not profiled through another reward model")
        method = "reward-model"
    elif method == "reward-model" and kind != RegisteredModel.Kind.REWARD:
        raise DomainError("profiling a policy through a reward model needs reward_version")
    if not version.artifact_uri or (
        storage.is_remote(version.artifact_uri) and not storage.in_store(version.artifact_uri)
    ):
        raise DomainError("only versions whose artifact is stored here can be profiled")
    if queue not in GENERATION_QUEUES:
        raise DomainError(f"queue must be one of {', '.join(GENERATION_QUEUES)}")
    ModelVersion.objects.filter(pk=version.pk).update(
        model_discretion_profile={"status": "queued", "method": method}
    )
    args = [
        version.pk,
        probe_project.pk if probe_project else None,
        method,
        reward_version.pk if reward_version else None,
    ]
    transaction.on_commit(
        lambda: background.send("training.profile_model_version", *args, queue=queue)
    )
