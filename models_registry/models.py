"""Registered models, their versions and lineage, and the stage audit log."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import DatasetSnapshot, PrincipleSet, choices_check


class RegisteredModelKind(models.TextChoices):
    BASE = "base", "Base"
    SFT = "sft", "SFT"
    REWARD = "reward", "Reward model"
    DPO = "dpo", "DPO"
    PPO = "ppo", "PPO"
    GRPO = "grpo", "GRPO"
    KTO = "kto", "KTO"
    ORPO = "orpo", "ORPO"


class RegisteredModel(models.Model):
    """A named line of models (one per purpose), like an MLflow registered model."""

    Kind = RegisteredModelKind
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [choices_check("kind", RegisteredModelKind, "registeredmodel_kind_valid")]

    def __str__(self) -> str:
        return self.name


class ModelVersionStage(models.TextChoices):
    NONE = "none", "None"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"
    ARCHIVED = "archived", "Archived"


class ArtifactFormat(models.TextChoices):
    FULL = "full", "Full weights"
    ADAPTER = "adapter", "Adapter (LoRA) over its base"


class ModelVersion(models.Model):
    """One trained artifact with everything that fed it."""

    Stage = ModelVersionStage
    ArtifactFormat = ArtifactFormat
    registered_model = models.ForeignKey(
        RegisteredModel, on_delete=models.CASCADE, related_name="versions"
    )
    version = models.PositiveIntegerField()
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.NONE)
    artifact_uri = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    # An adapter's base is its "base" parent (or the path / hub id its adapter_config names);
    # it downloads as the adapter or merged into that base.
    artifact_format = models.CharField(
        max_length=8, choices=ArtifactFormat.choices, default=ArtifactFormat.FULL
    )
    parents = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="children", through="ModelParent"
    )
    dataset_snapshot = models.ForeignKey(
        DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    principle_set = models.ForeignKey(
        PrincipleSet, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # pseudonym -> {"judgments": n, "share": f}
    annotator_contributions = models.JSONField(default=dict, blank=True)
    data_discretion_profile = models.JSONField(default=dict, blank=True)
    model_discretion_profile = models.JSONField(default=dict, blank=True)
    # The precedence of principles a policy was trained to (its run's ``precedence``): the
    # profile measures the model against it (``dd_target``).
    precedence = models.JSONField(default=dict, blank=True)
    eval_metrics = models.JSONField(default=dict, blank=True)
    model_card = models.TextField(blank=True)
    # The user that represents this model when it acts as an annotator (kind=model).
    annotator = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_version",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["registered_model", "version"], name="modelversion_model_version"
            ),
            choices_check("stage", ModelVersionStage, "modelversion_stage_valid"),
            choices_check("artifact_format", ArtifactFormat, "modelversion_artifact_format_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.registered_model.name}@{self.version}"


class ModelParentRole(models.TextChoices):
    BASE = "base", "Base model"
    REFERENCE = "reference", "Reference model"
    REWARD = "reward", "Reward model"


class ModelParent(models.Model):
    """A lineage edge: ``child`` was trained from/with ``parent`` in a given role."""

    Role = ModelParentRole
    child = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="parent_links")
    parent = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="child_links")
    role = models.CharField(max_length=10, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["child", "parent", "role"], name="modelparent_once"),
            models.CheckConstraint(
                condition=~Q(child=models.F("parent")), name="modelparent_acyclic_self"
            ),
            choices_check("role", ModelParentRole, "modelparent_role_valid"),
        ]


class StageChange(models.Model):
    """Audit log: who moved which version to which stage, and when."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="stage_changes"
    )
    from_stage = models.CharField(max_length=12, choices=ModelVersion.Stage.choices)
    to_stage = models.CharField(max_length=12, choices=ModelVersion.Stage.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    note = models.TextField(blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at"]


class GenerationJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class GenerationJob(models.Model):
    """The closed loop's "generate candidates" job: registered policies sample responses to a
    project's prompts and the responses become compare / rank tasks (executed by a worker)."""

    Status = GenerationJobStatus
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="generation_jobs"
    )
    model_versions = models.ManyToManyField(ModelVersion, related_name="generation_jobs")
    # samples_per_model, max_new_tokens, temperature, top_p, seed, max_prompts, engine, ...
    params = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=20, default="cpu")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    prompt_count = models.PositiveIntegerField(default=0)
    task_count = models.PositiveIntegerField(default=0)
    response_count = models.PositiveIntegerField(default=0)
    engine = models.CharField(max_length=20, blank=True)
    task_ids = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            choices_check("status", GenerationJobStatus, "generationjob_status_valid"),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1),
                name="generationjob_progress_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Generation {self.pk} ({self.status})"
