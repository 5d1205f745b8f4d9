"""Serializers for assignments, judgments and demonstrations."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import (
    Assignment,
    Demonstration,
    Judgment,
    Response,
    TaskResponse,
)
from annotation.projects.serializers import MessageSerializer
from annotation.vocabulary import SLOT_LETTERS
from common.api import FieldsBuiltOnce
from common.errors import DomainError

# ---- blindness: an annotator's payloads name responses only by slot letter (``"A"``, ``"B"``,
# … in the order that annotator was shown them: the assignment's ``display_order``), in input
# and output. Response ids, sources and models stay with staff (the ``Staff…`` serializers).


def slot_letter(response_id: int | None, display_order: list[int]) -> str | None:
    """The slot letter under which ``response_id`` was shown (``None`` for none)."""
    if response_id is None or response_id not in display_order:
        return None
    return SLOT_LETTERS[display_order.index(response_id)]


def ordering_letters(ordering: list[list[int]], display_order: list[int]) -> list[list[str]]:
    """``[[7], [3]]`` shown as ``[3, 7]`` → ``[["B"], ["A"]]``."""
    slot = {rid: SLOT_LETTERS[i] for i, rid in enumerate(display_order)}
    return [sorted(slot.get(rid, "?") for rid in bucket) for bucket in ordering]


def slot_to_id(value: object, display_order: list[int], where: str) -> int:
    """A slot letter of ``display_order`` (any case) → the response id shown there. Nothing
    else is accepted: a response id would let a client probe what it must not see."""
    if isinstance(value, str) and len(value) == 1 and value.upper() in SLOT_LETTERS:
        index = SLOT_LETTERS.index(value.upper())
        if index < len(display_order):
            return display_order[index]
    letters = ", ".join(SLOT_LETTERS[: len(display_order)]) or "none"
    raise DomainError(f"{where}: {value!r} is not a slot letter of this task ({letters})")


def judgment_display_order(judgment: Judgment) -> list[int]:
    """The order the judgment's responses were shown in: its assignment's, else (an imported
    judgment) the task's stored order."""
    if judgment.assignment_id is not None:
        return list(judgment.assignment.display_order)
    return list(
        TaskResponse.objects.filter(task_id=judgment.task_id)
        .order_by("position")
        .values_list("response_id", flat=True)
    )


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
    """A judgment. Responses are named by slot letter only (``"A"``, ``"B"``, … as shown);
    ``ordering`` is buckets best first (a bucket of several is a tie)."""

    ordering = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField(), allow_empty=False),
        allow_empty=False,
        max_length=8,
        help_text='buckets of slot letters, best first: [["B"], ["A"]]; a tie: [["A", "B"]]',
    )
    strength = serializers.IntegerField(min_value=0, max_value=3, default=0)
    both_bad = serializers.BooleanField(default=False)
    verdicts = serializers.DictField(
        child=serializers.JSONField(), default=dict,
        help_text='principle key → slot letter, "tie" or "n/a"',
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


class SlotVerdictSerializer(serializers.Serializer):
    """A principle verdict as its annotator sees it: the preferred response by slot letter."""

    principle = serializers.CharField()
    verdict = serializers.CharField()
    preferred_slot = serializers.CharField(allow_null=True)


class JudgmentSerializer(serializers.ModelSerializer):
    """A judgment as its annotator sees it: responses by slot letter (blind)."""

    ordering = serializers.SerializerMethodField()
    verdicts = serializers.SerializerMethodField()
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

    def _order(self, judgment: Judgment) -> list[int]:
        cached = getattr(judgment, "_shown_order", None)
        if cached is None:
            cached = judgment._shown_order = judgment_display_order(judgment)
        return cached

    @extend_schema_field(serializers.ListField(child=serializers.ListField(
        child=serializers.CharField())))  # fmt: skip
    def get_ordering(self, judgment: Judgment) -> list[list[str]]:
        return ordering_letters(judgment.ordering, self._order(judgment))

    @extend_schema_field(SlotVerdictSerializer(many=True))
    def get_verdicts(self, judgment: Judgment) -> list[dict]:
        order = self._order(judgment)
        return [
            {
                "principle": v.principle.key,
                "verdict": str(v.verdict),
                "preferred_slot": slot_letter(v.preferred_response_id, order),
            }
            for v in judgment.verdicts.all()
        ]


class VerdictSerializer(serializers.Serializer):
    principle = serializers.CharField(source="principle.key")
    verdict = serializers.CharField()
    preferred_response = serializers.IntegerField(source="preferred_response_id", allow_null=True)


class StaffJudgmentSerializer(serializers.ModelSerializer):
    """A judgment as staff see it: responses by id."""

    ordering = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), read_only=True
    )
    verdicts = VerdictSerializer(many=True, read_only=True)
    decisive = serializers.SlugRelatedField(
        source="decisive_principles", slug_field="key", many=True, read_only=True
    )
    project = serializers.IntegerField(source="task.project_id", read_only=True)

    class Meta:
        model = Judgment
        fields = JudgmentSerializer.Meta.fields
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


def judgment_body(judgment: Judgment, display_order: list[int]) -> dict:
    """``JudgmentSerializer``'s answer for a judgment ``judging.submit_judgment`` has just
    written (``Judgment.written_verdicts`` and ``written_decisive``), by the slots of
    ``display_order``."""
    return {
        "id": judgment.pk,
        "task": judgment.task_id,
        "project": judgment.task.project_id,
        "assignment": judgment.assignment_id,
        "annotator": judgment.annotator_id,
        "ordering": ordering_letters(judgment.ordering, display_order),
        "strength": judgment.strength,
        "both_bad": judgment.both_bad,
        "verdicts": [
            {
                "principle": v.principle.key,
                "verdict": str(v.verdict),
                "preferred_slot": slot_letter(v.preferred_response_id, display_order),
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
    """A demonstration as its annotator sees it: the response it started from by slot letter
    (``context["orders"]``: task id → the annotator's display order, else one query)."""

    based_on = serializers.SerializerMethodField()
    cited = serializers.SlugRelatedField(
        source="cited_principles", slug_field="key", many=True, read_only=True
    )

    class Meta:
        model = Demonstration
        fields = ["id", "prompt", "task", "annotator", "text", "based_on", "cited",
                  "time_spent_ms", "created_at"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_based_on(self, demonstration: Demonstration) -> str | None:
        if demonstration.based_on_id is None:
            return None
        orders = self.context.get("orders")
        if orders is not None and demonstration.task_id in orders:
            order = orders[demonstration.task_id]
        else:
            order = shown_orders(demonstration.annotator_id, [demonstration.task_id]).get(
                demonstration.task_id, []
            )
        return slot_letter(demonstration.based_on_id, order)


def shown_orders(annotator_id: int, task_ids: list[int | None]) -> dict[int, list[int]]:
    """Task id → the display order the annotator was shown (their assignment), one query."""
    return dict(
        Assignment.objects.filter(annotator_id=annotator_id, task_id__in=task_ids).values_list(
            "task_id", "display_order"
        )
    )


class StaffDemonstrationSerializer(serializers.ModelSerializer):
    """A demonstration as staff see it: ``based_on`` is a response id."""

    cited = serializers.SlugRelatedField(
        source="cited_principles", slug_field="key", many=True, read_only=True
    )

    class Meta:
        model = Demonstration
        fields = DemonstrationSerializer.Meta.fields
        read_only_fields = fields


class DemonstrationCreateSerializer(serializers.Serializer):
    task = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    text = serializers.CharField(max_length=100_000)
    based_on = serializers.JSONField(
        required=False, allow_null=True, default=None,
        help_text="The response edited: a slot letter of your assignment on the task.",
    )  # fmt: skip
    cited = serializers.ListField(
        child=serializers.CharField(max_length=120), default=list, max_length=200
    )
    idempotency_key = serializers.CharField(max_length=100, allow_null=True, default=None)
    time_spent_ms = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, allow_null=True, default=None
    )
