"""Training runs, the groups that launch several at once, and their metric series."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import DatasetSnapshot, Project, choices_check
from models_registry.models import ModelVersion


class TrainingRunKind(models.TextChoices):
    REWARD = "reward", "Reward model"
    SFT = "sft", "SFT"
    DPO = "dpo", "DPO"
    PPO = "ppo", "PPO"
    GRPO = "grpo", "GRPO"
    KTO = "kto", "KTO"
    ORPO = "orpo", "ORPO"


class TrainingRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class TrainingRunQueue(models.TextChoices):
    CPU = "cpu", "CPU"
    GPU = "gpu", "GPU"
    SLURM = "slurm", "Slurm cluster"


class RunGroupStatus(models.TextChoices):
    PREPARING = "preparing", "Preparing"
    LAUNCHED = "launched", "Launched"
    FAILED = "failed", "Failed"


class RunGroup(models.Model):
    """Runs launched together: "reward per principle" trains one reward model per principle of
    a project's principle set, each from that principle's preference snapshot
    (``training.groups``). A worker builds the snapshots, then launches a run for every
    principle with at least ``min_pairs`` pairs; ``skipped`` says which had fewer."""

    Status = RunGroupStatus
    name = models.CharField(max_length=200)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PREPARING)
    # What each run is launched with: snapshot filters, base model, run config, queue.
    request = models.JSONField(default=dict)
    min_pairs = models.PositiveIntegerField(default=1)
    # principle key -> pairs it had, for the principles left out (fewer than min_pairs)
    skipped = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [choices_check("status", RunGroupStatus, "rungroup_status_valid")]

    def __str__(self) -> str:
        return f"Run group {self.pk} ({self.name})"


class TrainingRun(models.Model):
    """One reward/SFT/DPO/PPO/GRPO/KTO/ORPO job executed by a Celery worker."""

    Kind = TrainingRunKind
    Status = TrainingRunStatus
    Queue = TrainingRunQueue
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    queue = models.CharField(max_length=20, choices=Queue.choices, default=Queue.CPU)
    # > 1: the worker spawns torchrun with this many processes (DDP / DeepSpeed / FSDP).
    num_processes = models.PositiveSmallIntegerField(default=1)
    config = models.JSONField(default=dict, help_text="Validated, defaults filled in.")
    snapshot = models.ForeignKey(
        DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    # A hub id, a local path or "builtin:tiny"; or a registered version in base_model_version.
    base_model = models.CharField(max_length=500, blank=True)
    base_model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reward_model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    output_model_version = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_run"
    )
    group = models.ForeignKey(
        RunGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    # A policy trained to a precedence of principles (``training.precedence``): the principle
    # reward models by key, the weights mixing them, the ranking and where it came from.
    precedence = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    current_step = models.PositiveIntegerField(default=0)
    max_steps = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    celery_task_id = models.CharField(max_length=100, blank=True)
    # The Slurm job of the latest attempt, on a queue that launches with Slurm (training.slurm).
    slurm_job_id = models.CharField(max_length=50, blank=True)
    # Which worker holds the run, and when it last reported: a restarted worker, or a stale
    # heartbeat, means the holder died and the run is re-queued to resume from its checkpoint.
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    checkpoint_dir = models.CharField(max_length=500, blank=True)
    eval_metrics = models.JSONField(default=dict, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # --- Strategy and scheduling ---
    # What the run was launched with (``training.strategies.launch_config``): strategy, processes,
    # torchrun command, FSDP / DeepSpeed arguments, the accelerate equivalent, CUDA devices.
    launch_config = models.JSONField(default=dict, blank=True)
    # Why a queued run is not dispatched yet, e.g. "waiting for a worker with 4 GPUs"; empty once
    # it is sent to a worker (``training.scheduling``).
    waiting_reason = models.CharField(max_length=200, blank=True)
    # The worker's own queue a run was sent to (``worker.<name>``); empty for shared queues.
    placed_queue = models.CharField(max_length=220, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            choices_check("kind", TrainingRunKind, "trainingrun_kind_valid"),
            choices_check("status", TrainingRunStatus, "trainingrun_status_valid"),
            choices_check("queue", TrainingRunQueue, "trainingrun_queue_valid"),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="trainingrun_progress_range"
            ),
            models.CheckConstraint(
                condition=Q(num_processes__gte=1), name="trainingrun_processes_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.kind}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


class WorkerNode(models.Model):
    """A Celery worker and the devices it reported (at start and on every heartbeat): the
    scheduler routes a run needing N GPUs to a live node with at least N (``training.scheduling``).
    """

    name = models.CharField(max_length=200, unique=True)  # Celery node name, e.g. celery@gpu-4
    queue = models.CharField(max_length=220)  # the node's own queue, ``worker.<name>``
    queues = models.JSONField(default=list)  # the shared queues it consumes (cpu, gpu)
    # [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559}, ...]; [] on CPU
    gpus = models.JSONField(default=list, blank=True)
    gpu_count = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.gpu_count} GPUs)"


class RunMetric(models.Model):
    """One logged scalar of a run at a step (loss, accuracy, reward, kl, ...)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    name = models.CharField(max_length=120)
    value = models.FloatField()
    logged_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "name", "step"]
        # one value per (run, name, step): a resumed attempt's replayed steps replace theirs
        constraints = [
            models.UniqueConstraint(fields=["run", "name", "step"], name="runmetric_one_per_step")
        ]


# ---------------------------------------------------------------- judges (training.judges)


class JudgeTemplateKind(models.TextChoices):
    PRINCIPLE = "principle", "Principle verdict (pair × principle)"
    PREFERENCE = "preference", "Generic preference (pair)"
    CRITIQUE = "critique", "Critique and revision (response × principle)"


class JudgeTemplate(models.Model):
    """A versioned prompt for a judge: a new text is a new version (rows are never edited)."""

    Kind = JudgeTemplateKind
    name = models.SlugField(max_length=80)
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    system = models.TextField()
    # Placeholders: {prompt}, {response_a}, {response_b}, and {principle} for the principle kind;
    # {prompt}, {response}, {principle} for the critique kind (the critique request).
    user = models.TextField()
    # Critique kind: the follow-up request, after the critique, for the revised response.
    revision = models.TextField(blank=True)
    options = models.JSONField(help_text='Answer labels, e.g. ["A", "B", "NA"].')
    sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="judgetemplate_version"),
            choices_check("kind", JudgeTemplateKind, "judgetemplate_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class JudgeBackend(models.TextChoices):
    HTTP = "http", "OpenAI-compatible HTTP endpoint"
    MODEL = "model", "Registered model version (transformers on a worker)"


class JudgeJob(models.Model):
    """Ask a judge about every pair (× principle) of a project in both presentation orders; the
    answers become the judgments of a model annotator (``training.judges``)."""

    Backend = JudgeBackend
    Status = TrainingRunStatus
    name = models.CharField(max_length=200, blank=True)
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="judge_jobs"
    )
    template = models.ForeignKey(JudgeTemplate, on_delete=models.PROTECT, related_name="jobs")
    backend = models.CharField(max_length=6, choices=Backend.choices)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # base_url, model, api_key_env (a variable name, never the key), concurrency, retries,
    # top_logprobs, prices per million tokens: validated by training.judges.services.
    config = models.JSONField(default=dict, blank=True)
    task_ids = models.JSONField(default=list, blank=True, help_text="Empty: every pair.")
    # The scope came from this snapshot's frozen judgment set (task_ids holds what it resolved to).
    snapshot = models.ForeignKey(
        DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judge_jobs"
    )
    # Critique template: the principle every response is critiqued and revised against.
    principle = models.ForeignKey(
        "annotation.Principle", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(
        max_length=10, choices=TrainingRunStatus.choices, default=TrainingRunStatus.QUEUED
    )
    total_items = models.PositiveIntegerField(default=0)
    done_items = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    verdicts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            choices_check("backend", JudgeBackend, "judgejob_backend_valid"),
            choices_check("status", TrainingRunStatus, "judgejob_status_valid"),
        ]

    def __str__(self) -> str:
        return f"Judge job {self.pk} ({self.backend}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}

    @property
    def progress(self) -> float:
        return self.done_items / self.total_items if self.total_items else 0.0

    @property
    def estimated_cost(self) -> float:
        """Tokens × the configured prices (per million tokens; 0 when none are given)."""
        c = self.config
        return (
            self.prompt_tokens * float(c.get("price_prompt_per_m", 0))
            + self.completion_tokens * float(c.get("price_completion_per_m", 0))
        ) / 1e6


class JudgeAnswer(models.Model):
    """One answered question of a job: a pair (× principle) in one presentation order.
    ``order`` 0 shows the task's response at position 0 as A, 1 shows it as B."""

    job = models.ForeignKey(JudgeJob, on_delete=models.CASCADE, related_name="answers")
    task = models.ForeignKey("annotation.Task", on_delete=models.CASCADE, related_name="+")
    principle = models.ForeignKey(
        "annotation.Principle", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    order = models.PositiveSmallIntegerField()
    probs = models.JSONField(help_text='{"A": p, "B": p, "NA": p}')
    answer = models.CharField(max_length=40, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "task", "principle", "order"],
                condition=Q(principle__isnull=False),
                name="judgeanswer_once",
            ),
            models.UniqueConstraint(
                fields=["job", "task", "order"],
                condition=Q(principle__isnull=True),
                name="judgeanswer_once_pair",
            ),
            models.CheckConstraint(condition=Q(order__lte=1), name="judgeanswer_order"),
        ]


class JudgeRevision(models.Model):
    """A critique job's answer for one response: the judge's critique against the job's
    principle and its revision, which becomes a demonstrate task (the revision at position 0,
    the original at 1) that humans accept or edit."""

    job = models.ForeignKey(JudgeJob, on_delete=models.CASCADE, related_name="revisions")
    task = models.ForeignKey("annotation.Task", on_delete=models.CASCADE, related_name="+")
    response = models.ForeignKey("annotation.Response", on_delete=models.CASCADE, related_name="+")
    principle = models.ForeignKey(
        "annotation.Principle", on_delete=models.CASCADE, related_name="revisions"
    )
    critique = models.TextField()
    revision = models.TextField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    revised_response = models.ForeignKey(
        "annotation.Response", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    demonstrate_task = models.ForeignKey(
        "annotation.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "response"], name="judgerevision_once")
        ]
