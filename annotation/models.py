"""Annotation tables: principles, projects, prompts, responses, tasks, judgments, snapshots.

Business flows live in ``services.py``; these classes hold tables, constraints and small
properties only. Every ``choices`` field is also enforced by a database check constraint.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


def choices_check(
    field: str, choices: type[models.TextChoices], name: str
) -> models.CheckConstraint:
    """A database check constraint that keeps ``field`` inside its ``choices``."""
    return models.CheckConstraint(condition=Q(**{f"{field}__in": choices.values}), name=name)


class AnnotatorProfileKind(models.TextChoices):
    HUMAN = "human", "Human"
    MODEL = "model", "Model"


class AnnotatorProfileRole(models.TextChoices):
    ADMIN = "admin", "Admin"
    MANAGER = "manager", "Manager"
    ANNOTATOR = "annotator", "Annotator"
    VIEWER = "viewer", "Viewer"


class AnnotatorProfile(models.Model):
    """Every user has one. Algorithmic annotators (reward models, LLM judges) are users too."""

    Kind = AnnotatorProfileKind
    Role = AnnotatorProfileRole
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.HUMAN)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ANNOTATOR)
    # For kind=model: what scored ("model:<name>@<version>", "external:<label>", ...).
    model_ref = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            choices_check("kind", AnnotatorProfileKind, "annotatorprofile_kind_valid"),
            choices_check("role", AnnotatorProfileRole, "annotatorprofile_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user.username} ({self.kind}, {self.role})"


class PrincipleSetStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"


class PrincipleSet(models.Model):
    """A versioned constitution / model spec. Published versions are immutable."""

    Status = PrincipleSetStatus
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    description = models.TextField(blank=True)
    source = models.CharField(max_length=300, blank=True, help_text="Where the text came from.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="principleset_name_version"),
            choices_check("status", PrincipleSetStatus, "principleset_status_valid"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(published_at__isnull=False),
                name="principleset_published_has_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def is_published(self) -> bool:
        return self.status == self.Status.PUBLISHED


class PrincipleKind(models.TextChoices):
    RULE = "rule", "Rule"
    GUIDELINE = "guideline", "Guideline"
    DEFAULT = "default", "Default"


class PrincipleAuthority(models.TextChoices):
    """Precedence tiers, highest first (OpenAI Model Spec chain of command)."""

    PLATFORM = "platform", "Platform"
    ROOT = "root", "Root"
    SYSTEM = "system", "System"
    DEVELOPER = "developer", "Developer"
    USER = "user", "User"
    GUIDELINE = "guideline", "Guideline"


class Principle(models.Model):
    """One clause of a principle set, with a key that stays stable across versions."""

    Kind = PrincipleKind
    Authority = PrincipleAuthority
    principle_set = models.ForeignKey(
        PrincipleSet, on_delete=models.CASCADE, related_name="principles"
    )
    key = models.SlugField(max_length=120)
    title = models.CharField(max_length=300)
    text = models.TextField(blank=True)
    section = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GUIDELINE)
    authority = models.CharField(max_length=10, choices=Authority.choices, default=Authority.USER)
    # Declared precedence: a lower number is a higher priority; None = no declared order.
    declared_priority = models.PositiveIntegerField(null=True, blank=True)
    # Order in the source document (0-based): external files refer to principles by it.
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["principle_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["principle_set", "key"], name="principle_set_key"),
            models.UniqueConstraint(
                fields=["principle_set", "position"], name="principle_set_position"
            ),
            choices_check("kind", PrincipleKind, "principle_kind_valid"),
            choices_check("authority", PrincipleAuthority, "principle_authority_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.authority})"


class ProjectTaskKind(models.TextChoices):
    COMPARE = "compare", "Compare two responses"
    RANK = "rank", "Rank K responses"
    DEMONSTRATE = "demonstrate", "Write a demonstration"
    RATE = "rate", "Rate one response"


class Project(models.Model):
    """One annotation campaign over a fixed principle-set version."""

    TaskKind = ProjectTaskKind
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Markdown instructions for annotators.")
    principle_set = models.ForeignKey(
        PrincipleSet, on_delete=models.PROTECT, related_name="projects"
    )
    task_kinds = models.JSONField(default=list, help_text="Task kinds this project uses.")
    annotations_per_task = models.PositiveSmallIntegerField(default=1)
    lease_seconds = models.PositiveIntegerField(default=15 * 60)
    randomize_positions = models.BooleanField(default=True)
    gold_ratio = models.FloatField(default=0.0)
    both_bad_creates_demonstration = models.BooleanField(default=False)
    edit_window_seconds = models.PositiveIntegerField(default=10 * 60)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Cached counts, recounted after every import and by the debounced metrics refresh
    # (``projects.services.refresh_project_counts``). The judgments by source add up to
    # ``judgment_count``: imported (origin ``import:…``), else by a model annotator, else human.
    task_count = models.PositiveIntegerField(default=0)
    judgment_count = models.PositiveIntegerField(default=0)
    human_judgment_count = models.PositiveIntegerField(default=0)
    model_judgment_count = models.PositiveIntegerField(default=0)
    imported_judgment_count = models.PositiveIntegerField(default=0)
    completed_task_count = models.PositiveIntegerField(default=0)
    counts_refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(annotations_per_task__gte=1), name="project_overlap_positive"
            ),
            models.CheckConstraint(
                condition=Q(gold_ratio__gte=0) & Q(gold_ratio__lte=1),
                name="project_gold_ratio_range",
            ),
            models.CheckConstraint(
                condition=Q(lease_seconds__gte=1), name="project_lease_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ProjectMembershipRole(models.TextChoices):
    MANAGER = "manager", "Manager"
    ANNOTATOR = "annotator", "Annotator"
    VIEWER = "viewer", "Viewer"


class ProjectMembership(models.Model):
    """A user's role in one project, with optional per-annotator caps. Admins and global
    managers reach every project without one (``roles.project_role``)."""

    Role = ProjectMembershipRole
    # led by the unique (project, user) index
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ANNOTATOR)
    is_active = models.BooleanField(default=True)
    # None = no cap. Counted over the member's judgments in the project (in all / since local
    # midnight) when a lease is asked for.
    max_judgments = models.PositiveIntegerField(null=True, blank=True)
    max_per_day = models.PositiveIntegerField(null=True, blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "user"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_once"),
            choices_check("role", ProjectMembershipRole, "membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.project_id} ({self.role})"


class ProjectInvitation(models.Model):
    """A link that makes whoever opens it (signed in) a member of a project with ``role``.
    Only the SHA-256 of its token is stored: the link is shown once, when it is created."""

    Role = ProjectMembershipRole
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ANNOTATOR)
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            choices_check("role", ProjectMembershipRole, "invitation_role_valid"),
            models.CheckConstraint(condition=Q(max_uses__gte=1), name="invitation_uses_positive"),
        ]

    def __str__(self) -> str:
        return f"Invitation {self.pk} to {self.project_id} ({self.role})"


class Prompt(models.Model):
    """A conversation (``messages=[{role, content}, …]``) awaiting responses."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    messages = models.JSONField()
    metadata = models.JSONField(default=dict, blank=True)
    # Identity in the imported source: e.g. the 0-based line of an HH-RLHF file.
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="prompt_project_external_id",
            )
        ]

    def __str__(self) -> str:
        return f"Prompt {self.pk}"


class Response(models.Model):
    """One candidate answer to a prompt. ``source`` is never shown to annotators."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    text = models.TextField()
    # "human:<id>", "model:<name>@<version>" or "external:<label>".
    source = models.CharField(max_length=300, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="The annotator who wrote it, if any (they never judge it).",
    )
    generation_params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Response {self.pk}"


class Task(models.Model):
    """A unit of annotation work over one prompt and its ordered responses."""

    Kind = Project.TaskKind

    # db_index=False: a foreign key whose column leads a composite or unique index below is
    # served by that index; a second one-column index only costs every write.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    responses = models.ManyToManyField(Response, through="TaskResponse", related_name="tasks")
    is_gold = models.BooleanField(default=False)
    # For gold tasks: {"ordering": [[response_id, ...], ...], "decisive": [principle_key, ...]}.
    gold_answer = models.JSONField(null=True, blank=True)
    # A demonstrate task created from a both-bad verdict points at that judgment.
    origin_judgment = models.ForeignKey(
        "Judgment", null=True, blank=True, on_delete=models.SET_NULL, related_name="follow_ups"
    )
    # Denormalized for the assignment engine: submitted judgments so far.
    submitted_count = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "submitted_count", "id"])]
        constraints = [choices_check("kind", Project.TaskKind, "task_kind_valid")]

    def __str__(self) -> str:
        return f"Task {self.pk} ({self.kind})"


class TaskResponseSourceLabel(models.TextChoices):
    NONE = "", "None"
    CHOSEN = "chosen", "Chosen"
    REJECTED = "rejected", "Rejected"


class TaskResponse(models.Model):
    """A response's canonical place in a task; ``source_label`` keeps an imported verdict."""

    SourceLabel = TaskResponseSourceLabel
    task = models.ForeignKey(  # led by the unique (task, position) index
        Task, on_delete=models.CASCADE, related_name="task_responses", db_index=False
    )
    response = models.ForeignKey(Response, on_delete=models.CASCADE)
    position = models.PositiveSmallIntegerField()
    source_label = models.CharField(
        max_length=10, choices=SourceLabel.choices, default=SourceLabel.NONE, blank=True
    )

    class Meta:
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(fields=["task", "position"], name="taskresponse_position"),
            models.UniqueConstraint(fields=["task", "response"], name="taskresponse_response"),
            choices_check(
                "source_label", TaskResponseSourceLabel, "taskresponse_source_label_valid"
            ),
        ]


class AssignmentState(models.TextChoices):
    LEASED = "leased", "Leased"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Expired"


class Assignment(models.Model):
    """A task leased to one annotator, with the response order that annotator saw."""

    State = AssignmentState
    # led by the unique (task, annotator) and the (annotator, state) indexes
    task = models.ForeignKey(
        Task, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assignments",
        db_index=False,
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.LEASED)
    display_order = models.JSONField(help_text="Response ids in the order shown.")
    leased_at = models.DateTimeField()
    leased_until = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)

    # Not a column: the texts of the shown responses by response id, set by the read that
    # loaded this lease with its task content (``workspace.selectors.with_task``; on PostgreSQL
    # the lease statement itself), so a page or an API answer needs no further query. ``None``
    # on an instance loaded any other way.
    response_texts: dict[int, str] | None = None

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["annotator", "state"]),
            models.Index(fields=["state", "leased_until"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="assignment_task_annotator"),
            choices_check("state", AssignmentState, "assignment_state_valid"),
        ]

    def __str__(self) -> str:
        return f"Assignment {self.pk} ({self.state})"


class JudgmentStrength(models.IntegerChoices):
    NONE = 0, "No preference"
    SLIGHTLY = 1, "Slightly better"
    CLEARLY = 2, "Clearly better"
    MUCH = 3, "Much better"


class Judgment(models.Model):
    """An annotator's verdict on a task: ordering with ties, strength, both-bad, principles."""

    Strength = JudgmentStrength
    # led by the unique (task, annotator) and the (annotator, created_at) indexes
    task = models.ForeignKey(
        Task, on_delete=models.CASCADE, related_name="judgments", db_index=False
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="judgments",
        db_index=False,
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="judgment"
    )
    # Buckets of response ids, best first; responses in one bucket are tied.
    ordering = models.JSONField()
    strength = models.PositiveSmallIntegerField(choices=Strength.choices, default=Strength.NONE)
    both_bad = models.BooleanField(default=False)
    rationale = models.TextField(blank=True)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    decisive_principles = models.ManyToManyField(Principle, blank=True, related_name="decisive_in")
    # "No principle decided this: my own judgment."
    discretion = models.BooleanField(default=False)
    discretion_note = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    origin = models.CharField(max_length=60, default="ui", help_text="ui, api or import:<fmt>")
    # Set by a manager / admin who doubts the judgment (spam, misread task, …); snapshots can
    # leave flagged judgments out. Database defaults: raw inserts need not name these columns.
    flagged = models.BooleanField(default=False, db_default=False)
    flag_reason = models.CharField(max_length=500, blank=True, default="", db_default="")
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    flagged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not columns: what ``workspace.judging.submit_judgment`` has just written for a new
    # judgment, so that its caller can answer without reading it back: one verdict row per
    # principle of the set (``principle`` attached) and the decisive principles, both in
    # document order. ``None`` on any other instance (a replayed or a loaded judgment): read
    # ``verdicts`` and ``decisive_principles`` then.
    written_verdicts: list["PrincipleVerdict"] | None = None
    written_decisive: list[Principle] | None = None

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["annotator", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="judgment_task_annotator"),
            models.CheckConstraint(
                condition=Q(strength__gte=0) & Q(strength__lte=3), name="judgment_strength_range"
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | (Q(confidence__gte=1) & Q(confidence__lte=5)),
                name="judgment_confidence_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Judgment {self.pk}"


class PrincipleVerdictVerdict(models.TextChoices):
    PREFERS = "prefers", "Prefers a response"
    TIE = "tie", "Tie"
    NOT_APPLICABLE = "not_applicable", "Not applicable"


class PrincipleVerdict(models.Model):
    """Which response a principle favours in one judgment (position-independent)."""

    Verdict = PrincipleVerdictVerdict
    judgment = models.ForeignKey(  # led by the unique (judgment, principle) index
        Judgment, on_delete=models.CASCADE, related_name="verdicts", db_index=False
    )
    principle = models.ForeignKey(Principle, on_delete=models.CASCADE, related_name="verdicts")
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    preferred_response = models.ForeignKey(
        Response, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # Raw scores from an algorithmic oracle (e.g. {"A": .7, "B": .2, "NA": .1}).
    scores = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["judgment", "principle"], name="verdict_once"),
            choices_check("verdict", PrincipleVerdictVerdict, "verdict_valid"),
            models.CheckConstraint(
                condition=(Q(verdict="prefers") & Q(preferred_response__isnull=False))
                | (~Q(verdict="prefers") & Q(preferred_response__isnull=True)),
                name="verdict_prefers_names_response",
            ),
        ]


class Demonstration(models.Model):
    """An SFT answer written, or edited from a response, by an annotator."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="demonstrations"
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="demonstrations"
    )
    text = models.TextField()
    based_on = models.ForeignKey(
        Response, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cited_principles = models.ManyToManyField(Principle, blank=True, related_name="cited_in")
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class DatasetSnapshotKind(models.TextChoices):
    PREFERENCE = "preference", "Preference pairs"
    SFT = "sft", "SFT messages"
    KTO = "kto", "KTO unpaired"
    RANKING = "ranking", "K-way rankings"
    RAW = "raw", "Raw judgments"


class DatasetSnapshotFormat(models.TextChoices):
    JSONL = "jsonl", "JSON Lines"
    PARQUET = "parquet", "Parquet"


class DatasetSnapshotStatus(models.TextChoices):
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class DatasetSnapshot(models.Model):
    """A frozen, content-hashed export with its filters and the discretion of its rows."""

    Kind = DatasetSnapshotKind
    Format = DatasetSnapshotFormat
    Status = DatasetSnapshotStatus
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="snapshots")
    principle_set = models.ForeignKey(PrincipleSet, on_delete=models.PROTECT)
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSONL)
    filters = models.JSONField(default=dict, blank=True)
    aggregation = models.CharField(max_length=20, default="raw")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    progress = models.FloatField(default=0.0)
    row_count = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    artifact_path = models.CharField(max_length=500, blank=True)
    per_annotator_counts = models.JSONField(default=dict, blank=True)
    discretion_summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            choices_check("kind", DatasetSnapshotKind, "snapshot_kind_valid"),
            choices_check("format", DatasetSnapshotFormat, "snapshot_format_valid"),
            choices_check("status", DatasetSnapshotStatus, "snapshot_status_valid"),
        ]

    def __str__(self) -> str:
        return f"Snapshot {self.pk} ({self.kind})"


# ---------------------------------------------------------------- data in and out


class WebhookEvent(models.TextChoices):
    JUDGMENT_CREATED = "judgment.created", "Judgment created"
    SNAPSHOT_READY = "snapshot.ready", "Snapshot ready"
    RUN_FINISHED = "run.finished", "Training run finished"


class Webhook(models.Model):
    """An HTTP endpoint that receives HMAC-signed event payloads (delivered by Celery)."""

    Event = WebhookEvent
    name = models.CharField(max_length=200, blank=True)
    url = models.URLField(max_length=500)
    # HMAC-SHA256 key for the ``X-Webhook-Signature`` header; never shown after creation.
    secret = models.CharField(max_length=200)
    events = models.JSONField(default=list, help_text="Subscribed event names.")
    # None = every project; events without a project (run.finished) go to project-less hooks.
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks"
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.url


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event for one webhook: the exact payload signed, and every attempt's outcome."""

    Status = WebhookDeliveryStatus
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=60)
    event_id = models.UUIDField(unique=True)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            choices_check("status", WebhookDeliveryStatus, "webhookdelivery_status_valid")
        ]


class ImportJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    """An uploaded file imported by a Celery worker, with progress for the browser and API."""

    Status = ImportJobStatus
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    # "prompts" (jsonl/json/csv/parquet) or a preference format (trl, hh-rlhf, arena, ...).
    format = models.CharField(max_length=30)
    file_path = models.CharField(max_length=500, help_text="Relative to MEDIA_ROOT.")
    original_name = models.CharField(max_length=300, blank=True)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=20, blank=True)
    progress = models.FloatField(default=0.0)
    records = models.PositiveIntegerField(default=0)
    task_count = models.PositiveIntegerField(default=0)
    judgment_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # An unexpected failure's traceback, for staff (``error`` says it in words).
    traceback = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            choices_check("status", ImportJobStatus, "importjob_status_valid"),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="importjob_progress_range"
            ),
        ]

    def __str__(self) -> str:
        return f"Import {self.pk} ({self.format}, {self.status})"


# ---------------------------------------------------------------- quality & discretion metrics


class MetricsReportKind(models.TextChoices):
    QUALITY = "quality", "Agreement, consensus and annotator diagnostics"
    DISCRETION = "discretion", "Discretion (DA, PS, priorities, DD)"


class MetricsReport(models.Model):
    """A cached metrics payload of one project for one parameter set (see ``quality.py``).

    ``refresh_due_at`` set = a recompute is requested; the Celery task recomputes at that time
    (requests arriving before it are folded into the same run: debounced).
    """

    Kind = MetricsReportKind
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="metrics_reports")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    params_hash = models.CharField(max_length=64)
    payload = models.JSONField(null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    compute_ms = models.PositiveIntegerField(null=True, blank=True)
    refresh_due_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "kind", "id"]
        indexes = [models.Index(fields=["project", "refresh_due_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind", "params_hash"], name="metricsreport_once"
            ),
            choices_check("kind", MetricsReportKind, "metricsreport_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} metrics of project {self.project_id}"
