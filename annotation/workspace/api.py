"""REST endpoints for the annotator path: assignments, judgments, demonstrations."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response as ApiResponse

from annotation.filters import (
    AssignmentFilter,
    DemonstrationFilter,
    JudgmentFilter,
)
from annotation.models import (
    Assignment,
    Demonstration,
    Judgment,
    PrincipleVerdict,
    Project,
    Response,
    Task,
)
from annotation.permissions import (
    EVERYONE,
    STAFF,
    MemberRows,
    is_staff,
)
from annotation.roles import require_annotator
from annotation.vocabulary import names_no_response
from annotation.workspace import demonstrations, judging, leasing, serializers
from annotation.workspace import selectors as workspace_selectors
from annotation.workspace.serializers import slot_to_id
from common.api import ApiViewSet, validated
from common.errors import DomainError


def _database_id(value: str) -> int | None:
    """A URL's id as an int, or ``None`` unless it is one a bigint column can hold."""
    if value.isascii() and value.isdigit() and 0 < int(value) < 2**63:
        return int(value)
    return None


class OwnRowsForAnnotators(MemberRows):
    """Rows with an ``annotator``: staff see everyone's, anyone else only their own (the
    object-level rule of assignments, judgments and demonstrations), in the projects where
    they are still members. Open to every signed-in user: a viewer has no rows, and the
    services refuse work in a project whose role does not annotate."""

    project_lookup = "task__project"

    def get_queryset(self):
        queryset = super().get_queryset()
        if not is_staff(self.request.user):
            queryset = queryset.filter(annotator=self.request.user)
        return queryset


def _judgment_arguments(data: dict, display_order: list[int]) -> dict:
    """A judgment's API input (slot letters) as the service takes it (response ids)."""
    ordering = [
        [slot_to_id(item, display_order, "ordering") for item in bucket]
        for bucket in data["ordering"]
    ]
    verdicts = {}
    for key, value in data["verdicts"].items():
        if names_no_response(value):
            verdicts[key] = value.lower()
        else:
            verdicts[key] = slot_to_id(value, display_order, f"verdict {key!r}")
    return {
        "ordering": ordering,
        "strength": data["strength"],
        "both_bad": data["both_bad"],
        "verdicts": verdicts,
        "decisive": data["decisive"],
        "discretion": data["discretion"],
        "discretion_note": data["discretion_note"],
        "rationale": data["rationale"],
        "confidence": data["confidence"],
        "time_spent_ms": data["time_spent_ms"],
    }


def _judgments_queryset():
    return Judgment.objects.select_related("task", "assignment").prefetch_related(
        Prefetch("verdicts", queryset=PrincipleVerdict.objects.select_related("principle")),
        "decisive_principles",
    )


class AssignmentViewSet(
    OwnRowsForAnnotators, mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet
):
    """Leases. Annotators see their own only; staff see everyone's."""

    queryset = Assignment.objects.select_related("task__prompt").order_by("id")
    serializer_class = serializers.AssignmentSerializer
    filterset_class = AssignmentFilter
    default_roles = EVERYONE

    def get_serializer_class(self):
        if is_staff(self.request.user) and self.action in {"list", "retrieve"}:
            return serializers.StaffAssignmentSerializer
        return serializers.AssignmentSerializer

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None:
            ids = {rid for assignment in page for rid in assignment.display_order}
            self._texts = dict(Response.objects.filter(pk__in=ids).values_list("id", "text"))
        return page

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "_texts", None) is not None:
            context["texts"] = self._texts
        return context

    @extend_schema(
        request=serializers.SubmitSerializer,
        responses={201: serializers.JudgmentSerializer},
    )
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        """Submit the judgment for this assignment (idempotent on ``idempotency_key``)."""
        assignment = self._own_assignment(pk)
        data = validated(serializers.SubmitSerializer, request.data)
        judgment = judging.submit_judgment(
            assignment=assignment,
            annotator=request.user,
            idempotency_key=data["idempotency_key"],
            origin="api",
            **_judgment_arguments(data, assignment.display_order),
        )
        if judgment.written_verdicts is None:  # a retry: the stored judgment, read back
            body = serializers.JudgmentSerializer(_judgments_queryset().get(pk=judgment.pk)).data
        else:
            body = serializers.judgment_body(judgment, assignment.display_order)
        return ApiResponse(body, status=status.HTTP_201_CREATED)

    def _own_assignment(self, pk: str) -> Assignment:
        """The signed-in user's assignment by the workspace's one-statement read (with task,
        project and principle set); anything else as ``get_object`` decides: someone else's is
        a 404 for annotators, and staff reach it (the service then refuses)."""
        assignment_id = _database_id(pk)
        if assignment_id is not None and not self.request.query_params:
            try:
                return workspace_selectors.assignment_for_annotator(
                    annotator=self.request.user, assignment_id=assignment_id, with_prompt=False
                )
            except Assignment.DoesNotExist:
                pass
        return self.get_object()

    @extend_schema(
        request=serializers.SkipSerializer,
        responses=serializers.AssignmentSerializer,
    )
    @action(detail=True, methods=["post"])
    def skip(self, request, pk=None):
        """Give the task back with a reason."""
        data = validated(serializers.SkipSerializer, request.data)
        assignment = leasing.skip_task(
            assignment=self.get_object(), annotator=request.user, reason=data["reason"]
        )
        return ApiResponse(serializers.AssignmentSerializer(assignment).data)


class JudgmentViewSet(
    OwnRowsForAnnotators,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    ApiViewSet,
):
    """Judgments. Annotators see and edit their own only."""

    queryset = _judgments_queryset().order_by("id")
    serializer_class = serializers.JudgmentSerializer
    filterset_class = JudgmentFilter
    ordering_fields = ["id", "created_at"]
    http_method_names = ["get", "put", "post", "head", "options"]
    default_roles = EVERYONE
    action_roles = {"flag": STAFF}

    def get_serializer_class(self):
        if is_staff(self.request.user):
            return serializers.StaffJudgmentSerializer
        return serializers.JudgmentSerializer

    @extend_schema(
        request=serializers.EditJudgmentSerializer,
        responses=serializers.JudgmentSerializer,
    )
    def update(self, request, pk=None):
        """Replace one's own judgment within the project's edit window."""
        judgment = self.get_object()
        data = validated(serializers.EditJudgmentSerializer, request.data)
        display_order = judgment.assignment.display_order if judgment.assignment_id else []
        edited = judging.edit_judgment(
            judgment=judgment,
            annotator=request.user,
            **_judgment_arguments(data, display_order),
        )
        # only its annotator edits a judgment (the service refuses anyone else): the blind answer
        return ApiResponse(
            serializers.JudgmentSerializer(_judgments_queryset().get(pk=edited.pk)).data
        )

    @extend_schema(
        request=serializers.FlagJudgmentSerializer,
        responses=serializers.StaffJudgmentSerializer,
    )
    @action(detail=True, methods=["post"])
    def flag(self, request, pk=None):
        """Flag a doubtful judgment with a reason (``flagged: false`` clears it); snapshots with
        the ``exclude_flagged`` filter leave flagged judgments out. Managers and admins."""
        data = validated(serializers.FlagJudgmentSerializer, request.data)
        judgment = judging.flag_judgment(
            judgment=self.get_object(), by=request.user, flagged=data["flagged"],
            reason=data["reason"],
        )  # fmt: skip
        return ApiResponse(
            serializers.StaffJudgmentSerializer(_judgments_queryset().get(pk=judgment.pk)).data
        )


class DemonstrationViewSet(
    OwnRowsForAnnotators,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    ApiViewSet,
):
    """SFT demonstrations. Annotators see their own only."""

    queryset = Demonstration.objects.prefetch_related("cited_principles").order_by("id")
    project_lookup = "prompt__project"
    serializer_class = serializers.DemonstrationSerializer
    filterset_class = DemonstrationFilter
    default_roles = EVERYONE

    def get_serializer_class(self):
        if is_staff(self.request.user):
            return serializers.StaffDemonstrationSerializer
        return serializers.DemonstrationSerializer

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None and not is_staff(self.request.user):
            self._orders = serializers.shown_orders(self.request.user.pk, [d.task_id for d in page])
        return page

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "_orders", None) is not None:
            context["orders"] = self._orders
        return context

    @extend_schema(
        request=serializers.DemonstrationCreateSerializer,
        responses={201: serializers.DemonstrationSerializer},
    )
    def create(self, request):
        data = validated(serializers.DemonstrationCreateSerializer, request.data)
        task = Task.objects.filter(pk=data["task"]).first()
        if task is None:
            raise DomainError(f"no task {data['task']}")
        require_annotator(request.user, task.project_id)  # before slots name anything
        based_on = data["based_on"]
        order: list[int] = []
        if based_on is not None:
            mine = Assignment.objects.filter(task=task, annotator=request.user).first()
            order = mine.display_order if mine else []
            based_on = Response(pk=slot_to_id(based_on, order, "based_on"))
        demonstration = demonstrations.create_demonstration(
            annotator=request.user,
            task=task,
            text=data["text"],
            based_on=based_on,
            cited=data["cited"],
            idempotency_key=data["idempotency_key"],
            time_spent_ms=data["time_spent_ms"],
        )
        demonstration = self.queryset.get(pk=demonstration.pk)
        body = serializers.DemonstrationSerializer(
            demonstration, context={"orders": {task.pk: order}} if order else {}
        ).data
        return ApiResponse(body, status=status.HTTP_201_CREATED)


class ProjectWorkActions:
    """The annotator's action on a project (``ProjectViewSet``): lease the next task."""

    @extend_schema(
        request=None,
        responses={
            200: serializers.AssignmentSerializer,
            204: OpenApiResponse(description="Nothing left"),
        },
    )
    @action(detail=True, methods=["post"], url_path="next-task")
    def next_task(self, request, pk=None):
        """Lease the next task for the signed-in annotator (responses by slot, blind)."""
        project = self._work_project(pk)
        assignment = leasing.next_task(annotator=request.user, project=project)
        if assignment is None:
            return ApiResponse(status=status.HTTP_204_NO_CONTENT)
        assignment = workspace_selectors.with_task(assignment, project)
        return ApiResponse(serializers.lease_body(assignment))

    def _work_project(self, pk: str) -> Project:
        """The active project as the workspace reads it (``cached_workspace_project``); anything
        else as ``get_object`` decides (staff reach an inactive one: nothing to lease)."""
        project_id = _database_id(pk)
        if project_id is not None and not self.request.query_params:
            try:
                return workspace_selectors.cached_workspace_project(pk=project_id)
            except Project.DoesNotExist:
                pass
        return self.get_object()
