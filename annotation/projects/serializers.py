"""Serializers for projects, prompts, responses, tasks and the current user."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from annotation.models import (
    PrincipleSet,
    Project,
    ProjectInvitation,
    ProjectMembership,
    Prompt,
    Response,
    Task,
)
from annotation.projects.members import MAX_INVITATION_DAYS

User = get_user_model()


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField(allow_null=True)
    kind = serializers.CharField(allow_null=True)


# ``judgment_count`` split by source (``projects.services.recount_project``)
COUNTS_BY_SOURCE = ["human_judgment_count", "imported_judgment_count", "model_judgment_count"]


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
                  "created_at", "task_count", "judgment_count", "completed_task_count",
                  *COUNTS_BY_SOURCE, "counts_refreshed_at"]  # fmt: skip
        read_only_fields = ["id", "created_at", "task_count", "judgment_count",
                            "completed_task_count", *COUNTS_BY_SOURCE,
                            "counts_refreshed_at"]  # fmt: skip
        extra_kwargs = {
            "annotations_per_task": {"min_value": 1, "max_value": 100},
            "lease_seconds": {"min_value": 1, "max_value": 7 * 24 * 3600},
            "edit_window_seconds": {"min_value": 0, "max_value": 30 * 24 * 3600},
            "gold_ratio": {"min_value": 0.0, "max_value": 1.0},
        }


class ProjectUpdateSerializer(ProjectSerializer):
    class Meta(ProjectSerializer.Meta):
        read_only_fields = [*ProjectSerializer.Meta.read_only_fields, "slug", "principle_set"]


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
    task_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="The created tasks, in the records' order."
    )


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


# ---- members and invitations

CAP = {"min_value": 0, "max_value": 10**9, "allow_null": True, "required": False}


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)

    class Meta:
        model = ProjectMembership
        fields = [
            "id", "user", "username", "email", "role", "is_active", "max_judgments",
            "max_per_day", "created_at", "deactivated_at",
        ]  # fmt: skip
        read_only_fields = fields


class MemberCreateSerializer(serializers.Serializer):
    who = serializers.CharField(max_length=254, help_text="Username or e-mail.")
    role = serializers.ChoiceField(
        choices=ProjectMembership.Role.choices, default=ProjectMembership.Role.ANNOTATOR
    )
    max_judgments = serializers.IntegerField(**CAP)
    max_per_day = serializers.IntegerField(**CAP)


class MemberUpdateSerializer(serializers.Serializer):
    """Any subset: ``is_active: false`` deactivates (live leases released), ``true``
    reactivates."""

    role = serializers.ChoiceField(choices=ProjectMembership.Role.choices, required=False)
    max_judgments = serializers.IntegerField(**CAP)
    max_per_day = serializers.IntegerField(**CAP)
    is_active = serializers.BooleanField(required=False)


class InvitationCreateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=ProjectMembership.Role.choices, default=ProjectMembership.Role.ANNOTATOR
    )
    expires_days = serializers.IntegerField(min_value=1, max_value=MAX_INVITATION_DAYS, default=7)
    max_uses = serializers.IntegerField(min_value=1, max_value=10_000, default=1)


class InvitationSerializer(serializers.ModelSerializer):
    link = serializers.SerializerMethodField(help_text="Shown once, on creation.")

    class Meta:
        model = ProjectInvitation
        fields = ["id", "project", "role", "expires_at", "max_uses", "uses", "created_at", "link"]
        read_only_fields = fields

    def get_link(self, invitation) -> str:
        return self.context.get("link", "")
