"""Serializers for assignments, judgments and demonstrations."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import (
    Assignment,
    Demonstration,
    Judgment,
    Response,
)
from annotation.projects.serializers import MessageSerializer
from annotation.vocabulary import SLOT_LETTERS
from common.api import FieldsBuiltOnce


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
        texts = assignment.response_texts or self.context.get("texts")
        if texts is None or any(rid not in texts for rid in assignment.display_order):
            texts = dict(
                Response.objects.filter(pk__in=assignment.display_order).values_list("id", "text")
            )
        return _slots(assignment.display_order, texts)


def _slots(display_order: list[int], texts: dict[int, str]) -> list[dict]:
    return [
        {"slot": SLOT_LETTERS[i], "text": texts.get(rid, "")} for i, rid in enumerate(display_order)
    ]


class StaffAssignmentSerializer(AssignmentSerializer):
    class Meta(AssignmentSerializer.Meta):
        fields = [*AssignmentSerializer.Meta.fields, "annotator", "display_order"]
        read_only_fields = fields


# Validated on every submit: its fields are built once per process (``FieldsBuiltOnce``).
class SubmitSerializer(FieldsBuiltOnce, serializers.Serializer):
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


# The hot endpoints' answers (next-task, submit), built in one pass from what the request
# already holds: the same JSON as ``AssignmentSerializer`` / ``JudgmentSerializer`` (which
# still describe them in the schema), without their per-request field copies and reads.
_DATETIME = serializers.DateTimeField(read_only=True)
_MESSAGES = MessageSerializer(many=True, read_only=True)


def _when(value) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def lease_body(assignment: Assignment) -> dict:
    """``AssignmentSerializer``'s answer for a lease loaded with its task content
    (``selectors.with_task``: ``task.prompt``, ``response_texts``)."""
    task = assignment.task
    return {
        "id": assignment.pk,
        "task": assignment.task_id,
        "project": task.project_id,
        "kind": str(task.kind),
        "state": str(assignment.state),
        "leased_at": _when(assignment.leased_at),
        "leased_until": _when(assignment.leased_until),
        "submitted_at": _when(assignment.submitted_at),
        "skip_reason": str(assignment.skip_reason),
        "messages": _MESSAGES.to_representation(task.prompt.messages),
        "responses": _slots(assignment.display_order, assignment.response_texts or {}),
    }


def judgment_body(judgment: Judgment) -> dict:
    """``JudgmentSerializer``'s answer for a judgment ``judging.submit_judgment`` has just
    written (``Judgment.written_verdicts`` and ``written_decisive``)."""
    return {
        "id": judgment.pk,
        "task": judgment.task_id,
        "project": judgment.task.project_id,
        "assignment": judgment.assignment_id,
        "annotator": judgment.annotator_id,
        "ordering": judgment.ordering,
        "strength": judgment.strength,
        "both_bad": judgment.both_bad,
        "verdicts": [
            {
                "principle": v.principle.key,
                "verdict": str(v.verdict),
                "preferred_response": v.preferred_response_id,
            }
            for v in judgment.written_verdicts
        ],
        "decisive": [p.key for p in judgment.written_decisive],
        "discretion": judgment.discretion,
        "discretion_note": judgment.discretion_note,
        "rationale": judgment.rationale,
        "confidence": judgment.confidence,
        "time_spent_ms": judgment.time_spent_ms,
        "origin": judgment.origin,
        "flagged": judgment.flagged,
        "flag_reason": judgment.flag_reason,
        "flagged_at": _when(judgment.flagged_at),
        "created_at": _when(judgment.created_at),
        "updated_at": _when(judgment.updated_at),
    }


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
