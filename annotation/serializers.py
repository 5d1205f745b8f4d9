"""DRF serializers: thin shapes over the models; validation of business rules stays in services.

Annotators never see ``Response.source`` (staff-only serializers add it) and see the responses of
their assignments by slot (A, B, …) in the order shown to them, never by id.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import (
    AnnotatorProfile,
    Assignment,
    DatasetSnapshot,
    Demonstration,
    ImportJob,
    Judgment,
    Principle,
    PrincipleSet,
    Project,
    Prompt,
    Response,
    Task,
    Webhook,
    WebhookDelivery,
)
from annotation.selectors import SLOT_LETTERS

User = get_user_model()
IMPORT_FORMATS = [
    ("prompts", "Prompts with responses"),
    ("trl", "TRL preference rows"),
    ("hh-rlhf", "HH-RLHF transcripts"),
    ("arena", "Chatbot Arena battles"),
    ("label-studio", "Label Studio export (pairwise or List + Ranker)"),
]


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField(allow_null=True)
    kind = serializers.CharField(allow_null=True)


# ---------------------------------------------------------------- principles


class PrincipleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Principle
        fields = ["id", "principle_set", "key", "title", "text", "section", "kind", "authority",
                  "declared_priority", "position"]  # fmt: skip
        read_only_fields = fields


class PrincipleWriteSerializer(serializers.Serializer):
    key = serializers.SlugField(max_length=120)
    title = serializers.CharField(max_length=300)
    text = serializers.CharField(required=False, allow_blank=True, default="")
    section = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=Principle.Kind.choices, default=Principle.Kind.GUIDELINE)
    authority = serializers.ChoiceField(
        choices=Principle.Authority.choices, default=Principle.Authority.USER
    )
    declared_priority = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, allow_null=True, default=None
    )


class PrincipleUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300, required=False)
    text = serializers.CharField(required=False, allow_blank=True)
    section = serializers.CharField(max_length=300, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=Principle.Kind.choices, required=False)
    authority = serializers.ChoiceField(choices=Principle.Authority.choices, required=False)
    declared_priority = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, allow_null=True
    )


class PrincipleSetSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True)
    principle_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = PrincipleSet
        fields = ["id", "name", "version", "label", "status", "parent", "description", "source",
                  "created_at", "published_at", "principle_count"]  # fmt: skip
        read_only_fields = fields


class PrincipleSetDetailSerializer(PrincipleSetSerializer):
    principles = PrincipleSerializer(many=True, read_only=True)

    class Meta(PrincipleSetSerializer.Meta):
        fields = [*PrincipleSetSerializer.Meta.fields, "principles"]
        read_only_fields = fields


class PrincipleSetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    source = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    principles = PrincipleWriteSerializer(many=True, allow_empty=False, max_length=1000)
    publish = serializers.BooleanField(default=False)


class PrincipleChangeSerializer(serializers.Serializer):
    key = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField())


class PrincipleSetDiffSerializer(serializers.Serializer):
    base = serializers.CharField()
    other = serializers.CharField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    changed = PrincipleChangeSerializer(many=True)


# ---------------------------------------------------------------- projects


class ProjectSerializer(serializers.ModelSerializer):
    principle_set = serializers.PrimaryKeyRelatedField(queryset=PrincipleSet.objects.all())
    task_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=Project.TaskKind.choices),
        allow_empty=False,
        max_length=4,
        default=lambda: [Project.TaskKind.COMPARE],
    )

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "guidelines", "principle_set", "task_kinds",
                  "annotations_per_task", "lease_seconds", "randomize_positions", "gold_ratio",
                  "both_bad_creates_demonstration", "edit_window_seconds", "is_active",
                  "created_at", "task_count", "judgment_count", "completed_task_count"]  # fmt: skip
        read_only_fields = ["id", "created_at", "task_count", "judgment_count",
                            "completed_task_count"]  # fmt: skip
        extra_kwargs = {
            "annotations_per_task": {"min_value": 1, "max_value": 100},
            "lease_seconds": {"min_value": 1, "max_value": 7 * 24 * 3600},
            "edit_window_seconds": {"min_value": 0, "max_value": 30 * 24 * 3600},
            "gold_ratio": {"min_value": 0.0, "max_value": 1.0},
        }


class ProjectUpdateSerializer(ProjectSerializer):
    class Meta(ProjectSerializer.Meta):
        read_only_fields = [*ProjectSerializer.Meta.read_only_fields, "slug", "principle_set"]


# ---------------------------------------------------------------- prompts, responses, tasks


class ResponseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Response
        fields = ["id", "prompt", "text", "created_at"]
        read_only_fields = fields


class StaffResponseSerializer(ResponseSerializer):
    class Meta(ResponseSerializer.Meta):
        fields = [*ResponseSerializer.Meta.fields, "source", "author", "generation_params"]
        read_only_fields = fields


class PromptSerializer(serializers.ModelSerializer):
    messages = MessageSerializer(many=True, read_only=True)
    responses = ResponseSerializer(many=True, read_only=True)

    class Meta:
        model = Prompt
        fields = ["id", "project", "messages", "metadata", "external_id", "created_at",
                  "responses"]  # fmt: skip
        read_only_fields = fields


class StaffPromptSerializer(PromptSerializer):
    responses = StaffResponseSerializer(many=True, read_only=True)


class PromptRecordSerializer(serializers.Serializer):
    """One record of a bulk upload (the JSONL import format)."""

    id = serializers.CharField(required=False, max_length=200)
    messages = MessageSerializer(many=True, required=False)
    prompt = serializers.CharField(required=False)
    responses = serializers.JSONField(
        required=False, help_text='Strings or {"text", "source"?, "label"?} objects.'
    )
    metadata = serializers.DictField(required=False)
    kind = serializers.ChoiceField(choices=Project.TaskKind.choices, required=False)


class BulkPromptsSerializer(serializers.Serializer):
    records = PromptRecordSerializer(many=True, allow_empty=False, max_length=10_000)


class BulkResultSerializer(serializers.Serializer):
    tasks = serializers.IntegerField()


class TaskResponseSerializer(serializers.Serializer):
    response = serializers.IntegerField(source="response_id")
    position = serializers.IntegerField()
    text = serializers.CharField(source="response.text")


class StaffTaskResponseSerializer(TaskResponseSerializer):
    source = serializers.CharField(source="response.source")
    source_label = serializers.CharField()


class TaskSerializer(serializers.ModelSerializer):
    messages = MessageSerializer(source="prompt.messages", many=True, read_only=True)
    responses = TaskResponseSerializer(source="task_responses", many=True, read_only=True)

    class Meta:
        model = Task
        fields = ["id", "project", "prompt", "kind", "is_gold", "submitted_count", "created_at",
                  "messages", "responses"]  # fmt: skip
        read_only_fields = fields


class StaffTaskSerializer(TaskSerializer):
    responses = StaffTaskResponseSerializer(source="task_responses", many=True, read_only=True)

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "gold_answer", "origin_judgment"]
        read_only_fields = fields


# ---------------------------------------------------------------- assignments and judgments


class SlotSerializer(serializers.Serializer):
    slot = serializers.CharField()
    text = serializers.CharField()


class AssignmentSerializer(serializers.ModelSerializer):
    """An assignment as its annotator sees it: the prompt and the responses by slot."""

    project = serializers.IntegerField(source="task.project_id", read_only=True)
    kind = serializers.CharField(source="task.kind", read_only=True)
    messages = MessageSerializer(source="task.prompt.messages", many=True, read_only=True)
    responses = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = ["id", "task", "project", "kind", "state", "leased_at", "leased_until",
                  "submitted_at", "skip_reason", "messages", "responses"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(SlotSerializer(many=True))
    def get_responses(self, assignment: Assignment) -> list[dict]:
        texts = self.context.get("texts")
        if texts is None or any(rid not in texts for rid in assignment.display_order):
            texts = dict(
                Response.objects.filter(pk__in=assignment.display_order).values_list("id", "text")
            )
        return [
            {"slot": SLOT_LETTERS[i], "text": texts.get(rid, "")}
            for i, rid in enumerate(assignment.display_order)
        ]


class StaffAssignmentSerializer(AssignmentSerializer):
    class Meta(AssignmentSerializer.Meta):
        fields = [*AssignmentSerializer.Meta.fields, "annotator", "display_order"]
        read_only_fields = fields


class SubmitSerializer(serializers.Serializer):
    """A judgment. Responses are named by slot letter (``"A"``, ``"B"``, … as shown) or by
    response id; ``ordering`` is buckets best first (a bucket of several is a tie)."""

    ordering = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField(), allow_empty=False),
        allow_empty=False,
        max_length=8,
    )
    strength = serializers.IntegerField(min_value=0, max_value=3, default=0)
    both_bad = serializers.BooleanField(default=False)
    verdicts = serializers.DictField(
        child=serializers.JSONField(), default=dict,
        help_text='principle key → slot letter / response id, "tie" or "n/a"',
    )  # fmt: skip
    decisive = serializers.ListField(
        child=serializers.CharField(max_length=120), default=list, max_length=200
    )
    discretion = serializers.BooleanField(default=False)
    discretion_note = serializers.CharField(default="", allow_blank=True, max_length=2000)
    rationale = serializers.CharField(default="", allow_blank=True, max_length=20_000)
    confidence = serializers.IntegerField(min_value=1, max_value=5, allow_null=True, default=None)
    time_spent_ms = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, allow_null=True, default=None
    )
    idempotency_key = serializers.CharField(
        max_length=100, allow_null=True, default=None, required=False
    )


class EditJudgmentSerializer(SubmitSerializer):
    idempotency_key = None


class SkipSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class VerdictSerializer(serializers.Serializer):
    principle = serializers.CharField(source="principle.key")
    verdict = serializers.CharField()
    preferred_response = serializers.IntegerField(source="preferred_response_id", allow_null=True)


class JudgmentSerializer(serializers.ModelSerializer):
    verdicts = VerdictSerializer(many=True, read_only=True)
    decisive = serializers.SlugRelatedField(
        source="decisive_principles", slug_field="key", many=True, read_only=True
    )
    project = serializers.IntegerField(source="task.project_id", read_only=True)

    class Meta:
        model = Judgment
        fields = ["id", "task", "project", "assignment", "annotator", "ordering", "strength",
                  "both_bad", "verdicts", "decisive", "discretion", "discretion_note",
                  "rationale", "confidence", "time_spent_ms", "origin", "flagged",
                  "flag_reason", "flagged_at", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields


class FlagJudgmentSerializer(serializers.Serializer):
    flagged = serializers.BooleanField(default=True)
    reason = serializers.CharField(max_length=500, allow_blank=True, default="")


class DemonstrationSerializer(serializers.ModelSerializer):
    cited = serializers.SlugRelatedField(
        source="cited_principles", slug_field="key", many=True, read_only=True
    )

    class Meta:
        model = Demonstration
        fields = ["id", "prompt", "task", "annotator", "text", "based_on", "cited",
                  "time_spent_ms", "created_at"]  # fmt: skip
        read_only_fields = fields


class DemonstrationCreateSerializer(serializers.Serializer):
    task = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    text = serializers.CharField(max_length=100_000)
    based_on = serializers.JSONField(
        required=False, allow_null=True, default=None,
        help_text="The response edited: a slot letter of your assignment or a response id.",
    )  # fmt: skip
    cited = serializers.ListField(
        child=serializers.CharField(max_length=120), default=list, max_length=200
    )
    idempotency_key = serializers.CharField(max_length=100, allow_null=True, default=None)
    time_spent_ms = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, allow_null=True, default=None
    )


# ---------------------------------------------------------------- snapshots and imports


class SnapshotSerializer(serializers.ModelSerializer):
    download = serializers.SerializerMethodField()

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "project", "principle_set", "name", "kind", "format", "filters",
                  "aggregation", "status", "progress", "row_count", "sha256", "size_bytes",
                  "per_annotator_counts", "discretion_summary", "error", "created_by",
                  "created_at", "download"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_download(self, snapshot: DatasetSnapshot) -> str | None:
        if snapshot.status != DatasetSnapshot.Status.READY:
            return None
        return f"/api/v1/snapshots/{snapshot.pk}/download/"


class SnapshotCreateSerializer(serializers.Serializer):
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all())
    kind = serializers.ChoiceField(choices=DatasetSnapshot.Kind.choices)
    format = serializers.ChoiceField(
        choices=DatasetSnapshot.Format.choices, default=DatasetSnapshot.Format.JSONL
    )
    aggregation = serializers.ChoiceField(
        choices=["raw", "majority", "bradley_terry"], default="raw"
    )
    filters = serializers.DictField(
        required=False, default=dict,
        help_text="annotators, annotator_kinds, date_from, date_to, min_agreement, exclude_gold, "
        "exclude_flagged, exclude_discretion, exclude_both_bad, tie_policy, style, prompt_style, "
        "expansion, principle_set, include_rationale",
    )  # fmt: skip
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    run = serializers.ChoiceField(choices=["auto", "inline", "async"], default="auto")


class ImportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = ["id", "project", "format", "original_name", "options", "status", "stage",
                  "progress", "task_count", "judgment_count", "error", "created_by",
                  "created_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=IMPORT_FORMATS, default="prompts")
    annotator = serializers.CharField(max_length=140, required=False, allow_blank=True)
    annotator_kind = serializers.ChoiceField(
        choices=AnnotatorProfile.Kind.choices, default=AnnotatorProfile.Kind.HUMAN
    )
    model_ref = serializers.CharField(max_length=300, required=False, allow_blank=True)
    file_format = serializers.ChoiceField(
        choices=["jsonl", "json", "csv", "parquet"], required=False
    )
    ls_keys = serializers.CharField(
        max_length=400, required=False, allow_blank=True, help_text="prompt,left,right"
    )


# ---------------------------------------------------------------- webhooks


class WebhookSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Webhook.Event.choices), allow_empty=False,
        max_length=3,
    )  # fmt: skip
    secret = serializers.CharField(
        write_only=True, required=False, min_length=16, max_length=200,
        help_text="HMAC key; generated when omitted and returned once, on creation.",
    )  # fmt: skip
    url = serializers.URLField(max_length=500)

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "events", "project", "is_active", "secret", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_url(self, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("webhooks are delivered over http(s) only")
        return value


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook", "event", "event_id", "payload", "status", "attempts",
                  "response_status", "last_error", "created_at", "delivered_at"]  # fmt: skip
        read_only_fields = fields
