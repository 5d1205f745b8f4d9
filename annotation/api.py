"""REST API v1 (DRF): thin viewsets that validate, call a service or selector, and return.

Authorization is by role per action (``annotation.permissions``); annotators only ever reach
their own assignments, judgments and demonstrations, and never a response's ``source``.
Domain errors become 4xx (``http_status`` on the error class, else 400).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Count, Prefetch
from django.http import FileResponse, StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response as ApiResponse
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from annotation import selectors, services, snapshots
from annotation import serializers as s
from annotation.errors import DomainError, ImportFileError
from annotation.filters import (
    AssignmentFilter,
    DemonstrationFilter,
    ImportJobFilter,
    JudgmentFilter,
    PrincipleFilter,
    PrincipleSetFilter,
    ProjectFilter,
    PromptFilter,
    ResponseFilter,
    SnapshotFilter,
    TaskFilter,
    WebhookDeliveryFilter,
    WebhookFilter,
)
from annotation.importers import jobs
from annotation.importers.prompts import parse_record
from annotation.models import (
    Assignment,
    DatasetSnapshot,
    Demonstration,
    ImportJob,
    Judgment,
    Principle,
    PrincipleSet,
    PrincipleVerdict,
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
    Webhook,
)
from annotation.permissions import (
    ADMIN,
    ANNOTATING,
    EVERYONE,
    READERS,
    STAFF,
    RolePermission,
    is_staff,
)
from annotation.roles import role_of
from annotation.selectors import SLOT_LETTERS
from annotation.services import PrincipleSpec

# ---------------------------------------------------------------- shared plumbing


def _rate(scope: str, default: str) -> str:
    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES") or {}
    return rates.get(scope) or default


class ApiUserThrottle(UserRateThrottle):
    """Per-user rate limit (``THROTTLE_USER`` in production; generous in development)."""

    def get_rate(self):
        return _rate("user", "20000/min")


class ApiAnonThrottle(AnonRateThrottle):
    def get_rate(self):
        return _rate("anon", "600/min")


class ApiPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def domain_error_response(error: DomainError) -> ApiResponse:
    """A domain error as ``{"detail": message}`` (plus ``line`` for import errors)."""
    body = {"detail": str(error)}
    if isinstance(error, ImportFileError):
        body["line"] = error.line
    return ApiResponse(body, status=getattr(error, "http_status", status.HTTP_400_BAD_REQUEST))


class ApiMixin:
    """Token then session auth (anonymous → 401), roles per action, throttles, pagination."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [RolePermission]
    throttle_classes = [ApiAnonThrottle, ApiUserThrottle]
    pagination_class = ApiPagination
    default_roles = STAFF
    action_roles: dict = {}

    def handle_exception(self, exc):
        if isinstance(exc, DomainError):
            return domain_error_response(exc)
        if isinstance(exc, DjangoValidationError):
            exc = exceptions.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
            )
        elif isinstance(exc, ObjectDoesNotExist):
            exc = exceptions.NotFound(str(exc) or "not found")
        return super().handle_exception(exc)


class ApiViewSet(ApiMixin, viewsets.GenericViewSet):
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    ordering_fields = ["id"]
    ordering = ["id"]


class OwnRowsForAnnotators:
    """Rows with an ``annotator``: staff see everyone's, anyone else only their own (the
    object-level rule of assignments, judgments and demonstrations)."""

    def get_queryset(self):
        queryset = super().get_queryset()
        if not is_staff(self.request.user):
            queryset = queryset.filter(annotator=self.request.user)
        return queryset


def _validated(serializer_class, data, **context):
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _slot_to_id(value, display_order: list[int], where: str):
    """A slot letter (``"A"`` …) of ``display_order`` or a response id → the response id."""
    if isinstance(value, bool):
        raise DomainError(f"{where}: expected a slot letter or a response id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and len(value) == 1 and value.upper() in SLOT_LETTERS:
        index = SLOT_LETTERS.index(value.upper())
        if index < len(display_order):
            return display_order[index]
    raise DomainError(f"{where}: {value!r} is not a slot of this task or a response id")


def _judgment_arguments(data: dict, display_order: list[int]) -> dict:
    ordering = [
        [_slot_to_id(item, display_order, "ordering") for item in bucket]
        for bucket in data["ordering"]
    ]
    verdicts = {}
    for key, value in data["verdicts"].items():
        if isinstance(value, str) and value.lower() in {"tie", "n/a", "na", "not_applicable"}:
            verdicts[key] = value.lower()
        else:
            verdicts[key] = _slot_to_id(value, display_order, f"verdict {key!r}")
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
    return Judgment.objects.select_related("task").prefetch_related(
        Prefetch("verdicts", queryset=PrincipleVerdict.objects.select_related("principle")),
        "decisive_principles",
    )


# ---------------------------------------------------------------- me / auth


class MeView(ApiMixin, APIView):
    """The signed-in user and their role."""

    default_roles = EVERYONE

    @extend_schema(responses=s.MeSerializer)
    def get(self, request):
        profile = getattr(request.user, "profile", None)
        return ApiResponse(
            {
                "id": request.user.pk,
                "username": request.user.get_username(),
                "role": role_of(request.user),
                "kind": profile.kind if profile else None,
            }
        )


# ---------------------------------------------------------------- principle sets


@extend_schema_view(
    list=extend_schema(summary="Principle sets (every version)"),
    retrieve=extend_schema(responses=s.PrincipleSetDetailSerializer),
)
class PrincipleSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = PrincipleSet.objects.annotate(principle_count=Count("principles")).order_by(
        "name", "-version"
    )
    serializer_class = s.PrincipleSetSerializer
    filterset_class = PrincipleSetFilter
    ordering_fields = ["id", "name", "version", "created_at"]
    action_roles = {
        "list": EVERYONE, "retrieve": EVERYONE, "versions": EVERYONE, "diff": EVERYONE,
        "create": STAFF, "publish": STAFF, "fork": STAFF, "add_principle": STAFF,
    }  # fmt: skip

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("principles")
        return queryset

    def get_serializer_class(self):
        if self.action == "retrieve":
            return s.PrincipleSetDetailSerializer
        return super().get_serializer_class()

    @extend_schema(
        request=s.PrincipleSetCreateSerializer, responses={201: s.PrincipleSetDetailSerializer}
    )
    def create(self, request):
        data = _validated(s.PrincipleSetCreateSerializer, request.data)
        principle_set = services.create_principle_set(
            name=data["name"],
            principles=[PrincipleSpec(**p) for p in data["principles"]],
            description=data["description"],
            source=data["source"],
            created_by=request.user,
            publish=data["publish"],
        )
        return ApiResponse(self._detail(principle_set), status=status.HTTP_201_CREATED)

    def _detail(self, principle_set: PrincipleSet) -> dict:
        fresh = self.queryset.prefetch_related("principles").get(pk=principle_set.pk)
        return s.PrincipleSetDetailSerializer(fresh).data

    @extend_schema(request=None, responses=s.PrincipleSetDetailSerializer)
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Freeze a draft version (published versions are immutable)."""
        principle_set = services.publish_principle_set(principle_set=self.get_object())
        return ApiResponse(self._detail(principle_set))

    @extend_schema(request=None, responses={201: s.PrincipleSetDetailSerializer})
    @action(detail=True, methods=["post"])
    def fork(self, request, pk=None):
        """A new draft version whose parent is this one (principle keys are kept)."""
        fork = services.fork_principle_set(principle_set=self.get_object(), created_by=request.user)
        return ApiResponse(self._detail(fork), status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.PrincipleSetSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def versions(self, request, pk=None):
        """Every version with this set's name, newest first."""
        principle_set = self.get_object()
        versions = self.queryset.filter(name=principle_set.name).order_by("-version")
        return ApiResponse(s.PrincipleSetSerializer(versions, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("against", int, required=False,
                                     description="Other version's id (default: the parent).")],
        responses=s.PrincipleSetDiffSerializer,
    )  # fmt: skip
    @action(detail=True, methods=["get"], filter_backends=[])
    def diff(self, request, pk=None):
        """Principles added, removed and changed from ``against`` (default: the parent) to this
        version, matched by key."""
        principle_set = self.get_object()
        against = request.query_params.get("against")
        if against in (None, ""):
            if principle_set.parent_id is None:
                raise DomainError("this is a first version: pass ?against=<principle set id>")
            base = principle_set.parent
        else:
            try:
                base = PrincipleSet.objects.get(pk=int(against))
            except (ValueError, OverflowError, PrincipleSet.DoesNotExist) as exc:
                raise exceptions.NotFound("no principle set with that id") from exc
        return ApiResponse(selectors.principle_set_diff(base, principle_set))

    @extend_schema(request=s.PrincipleWriteSerializer, responses={201: s.PrincipleSerializer})
    @action(detail=True, methods=["post"], url_path="principles")
    def add_principle(self, request, pk=None):
        """Add a principle to a draft version."""
        data = _validated(s.PrincipleWriteSerializer, request.data)
        principle = services.add_principle(
            principle_set=self.get_object(), spec=PrincipleSpec(**data)
        )
        return ApiResponse(s.PrincipleSerializer(principle).data, status=status.HTTP_201_CREATED)


class PrincipleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    queryset = Principle.objects.all().order_by("principle_set", "position")
    serializer_class = s.PrincipleSerializer
    filterset_class = PrincipleFilter
    http_method_names = ["get", "patch", "delete", "head", "options"]
    action_roles = {"list": EVERYONE, "retrieve": EVERYONE}

    @extend_schema(request=s.PrincipleUpdateSerializer, responses=s.PrincipleSerializer)
    def partial_update(self, request, pk=None):
        """Edit a principle of a draft set (published sets refuse every edit)."""
        data = _validated(s.PrincipleUpdateSerializer, request.data)
        principle = services.update_principle(principle=self.get_object(), **data)
        return ApiResponse(s.PrincipleSerializer(principle).data)

    def destroy(self, request, pk=None):
        services.remove_principle(principle=self.get_object())
        return ApiResponse(status=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------- projects


EXPORT_PARAMETERS = [
    OpenApiParameter("kind", str, enum=list(DatasetSnapshot.Kind.values), default="preference"),
    OpenApiParameter("aggregation", str, enum=["raw", "majority", "bradley_terry"]),
    OpenApiParameter("style", str, enum=["conversational", "text"]),
    OpenApiParameter("prompt_style", str, enum=["explicit", "implicit"]),
    OpenApiParameter("expansion", str, enum=["all_pairs", "best_vs_rest", "adjacent"]),
    OpenApiParameter("tie_policy", str, enum=["drop", "both_orders"]),
    OpenApiParameter("min_agreement", float),
    OpenApiParameter("exclude_gold", bool),
    OpenApiParameter("exclude_both_bad", bool),
    OpenApiParameter("exclude_discretion", bool),
    OpenApiParameter("annotator_kinds", str, description="human,model"),
    OpenApiParameter("date_from", OpenApiTypes.DATETIME),
    OpenApiParameter("date_to", OpenApiTypes.DATETIME),
]
EXPORT_FILTER_KEYS = ("style", "prompt_style", "expansion", "tie_policy", "min_agreement",
                      "exclude_gold", "exclude_both_bad", "exclude_discretion", "date_from",
                      "date_to")  # fmt: skip


class ProjectViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ApiViewSet,
):
    queryset = Project.objects.select_related("principle_set").order_by("name")
    serializer_class = s.ProjectSerializer
    filterset_class = ProjectFilter
    ordering_fields = ["id", "name", "created_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    action_roles = {
        "list": EVERYONE, "retrieve": EVERYONE, "next_task": ANNOTATING, "export": READERS,
    }  # fmt: skip

    def get_queryset(self):
        queryset = super().get_queryset()
        if not is_staff(self.request.user):
            queryset = queryset.filter(is_active=True)
        return queryset

    def get_serializer_class(self):
        if self.action in {"update", "partial_update"}:
            return s.ProjectUpdateSerializer
        return super().get_serializer_class()

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = services.create_project(
            name=data.pop("name"),
            slug=data.pop("slug"),
            principle_set=data.pop("principle_set"),
            created_by=self.request.user,
            **data,
        )

    def perform_update(self, serializer):
        serializer.instance = services.update_project(
            project=serializer.instance, **serializer.validated_data
        )

    @extend_schema(
        request=None,
        responses={200: s.AssignmentSerializer, 204: OpenApiResponse(description="Nothing left")},
    )
    @action(detail=True, methods=["post"], url_path="next-task")
    def next_task(self, request, pk=None):
        """Lease the next task for the signed-in annotator (responses by slot, blind)."""
        assignment = services.next_task(annotator=request.user, project=self.get_object())
        if assignment is None:
            return ApiResponse(status=status.HTTP_204_NO_CONTENT)
        assignment = Assignment.objects.select_related("task__prompt").get(pk=assignment.pk)
        return ApiResponse(s.AssignmentSerializer(assignment).data)

    @extend_schema(request=s.BulkPromptsSerializer, responses={201: s.BulkResultSerializer})
    @action(detail=True, methods=["post"], url_path="prompts")
    def bulk_prompts(self, request, pk=None):
        """Create prompts with their responses and one task each, all or nothing. Records use
        the JSONL import format; an error names the record (1-based)."""
        project = self.get_object()
        _validated(s.BulkPromptsSerializer, request.data)
        records = request.data["records"]
        specs = [
            parse_record("record", number, record) for number, record in enumerate(records, start=1)
        ]
        from annotation.importers.checks import check_external_ids

        with transaction.atomic():
            check_external_ids(project, "record", list(enumerate(specs, start=1)))
            count = services.create_tasks(project=project, specs=specs)
        return ApiResponse({"tasks": count}, status=status.HTTP_201_CREATED)

    @extend_schema(
        request={"multipart/form-data": s.ImportUploadSerializer},
        responses={201: s.ImportJobSerializer, 202: s.ImportJobSerializer,
                   400: OpenApiResponse(description="Malformed file (nothing written)")},
    )  # fmt: skip
    @action(
        detail=True, methods=["post"], url_path="imports",
        parser_classes=[MultiPartParser, FormParser],
    )  # fmt: skip
    def upload(self, request, pk=None):
        """Upload a file to import: prompts (JSONL/JSON/CSV/Parquet) or labelled preferences
        (TRL, HH-RLHF, Arena, Label Studio). Small files are imported now (201); large ones by
        a Celery worker (202; poll ``/import-jobs/{id}/`` for progress)."""
        project = self.get_object()
        data = _validated(s.ImportUploadSerializer, request.data)
        upload = data.pop("file")
        fmt = data.pop("format")
        job = jobs.create_import_job(
            project=project, upload=upload, fmt=fmt, options=data, created_by=request.user
        )
        if upload.size <= jobs.inline_limit():
            job = jobs.run_import_job(job_id=job.pk)
            body = s.ImportJobSerializer(job).data
            if job.status == ImportJob.Status.FAILED:
                return ApiResponse({"detail": job.error, "job": body}, status=400)
            return ApiResponse(body, status=status.HTTP_201_CREATED)
        from annotation.tasks import run_import_job

        transaction.on_commit(lambda: run_import_job.delay(job.pk))
        return ApiResponse(s.ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=EXPORT_PARAMETERS,
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def export(self, request, pk=None):
        """Stream a small export as JSON Lines (no snapshot recorded). Exports reading more
        than ``EXPORT_STREAM_MAX_JUDGMENTS`` records must be snapshots."""
        project = self.get_object()
        params = request.query_params
        kind = params.get("kind", "preference")
        filters = {key: params[key] for key in EXPORT_FILTER_KEYS if params.get(key) not in
                   (None, "")}  # fmt: skip
        if "min_agreement" in filters:
            try:
                filters["min_agreement"] = float(filters["min_agreement"])
            except ValueError as exc:
                raise DomainError("min_agreement must be a number") from exc
        if params.get("annotator_kinds"):
            filters["annotator_kinds"] = params["annotator_kinds"].split(",")
        aggregation = params.get("aggregation", "raw")
        limit = int(getattr(settings, "EXPORT_STREAM_MAX_JUDGMENTS", 50_000))
        if snapshots.count_for_export(project=project, kind=kind, filters=filters) > limit:
            raise DomainError(f"more than {limit} records: create a snapshot instead")
        lines = snapshots.export_lines(
            project=project, kind=kind, aggregation=aggregation, filters=filters
        )
        first = next(lines, b"")  # surfaces option errors before the response starts

        def body():
            yield first
            yield from lines

        response = StreamingHttpResponse(body(), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-{kind}.jsonl"'
        return response


# ---------------------------------------------------------------- prompts, responses, tasks


class PromptViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = Prompt.objects.prefetch_related("responses").order_by("id")
    serializer_class = s.PromptSerializer
    filterset_class = PromptFilter
    default_roles = READERS

    def get_serializer_class(self):
        return s.StaffPromptSerializer if is_staff(self.request.user) else s.PromptSerializer


class ResponseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = Response.objects.order_by("id")
    serializer_class = s.ResponseSerializer
    filterset_class = ResponseFilter
    default_roles = READERS

    def get_serializer_class(self):
        return s.StaffResponseSerializer if is_staff(self.request.user) else s.ResponseSerializer


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = (
        Task.objects.select_related("prompt")
        .prefetch_related(
            Prefetch(
                "task_responses",
                queryset=TaskResponse.objects.select_related("response").order_by("position"),
            )
        )
        .order_by("id")
    )
    serializer_class = s.TaskSerializer
    filterset_class = TaskFilter
    default_roles = READERS

    def get_serializer_class(self):
        return s.StaffTaskSerializer if is_staff(self.request.user) else s.TaskSerializer


# ---------------------------------------------------------------- assignments and judgments


class AssignmentViewSet(
    OwnRowsForAnnotators, mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet
):
    """Leases. Annotators see their own only; staff see everyone's."""

    queryset = Assignment.objects.select_related("task__prompt").order_by("id")
    serializer_class = s.AssignmentSerializer
    filterset_class = AssignmentFilter
    default_roles = ANNOTATING

    def get_serializer_class(self):
        if is_staff(self.request.user) and self.action in {"list", "retrieve"}:
            return s.StaffAssignmentSerializer
        return s.AssignmentSerializer

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

    @extend_schema(request=s.SubmitSerializer, responses={201: s.JudgmentSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        """Submit the judgment for this assignment (idempotent on ``idempotency_key``)."""
        assignment = self.get_object()
        data = _validated(s.SubmitSerializer, request.data)
        judgment = services.submit_judgment(
            assignment=assignment,
            annotator=request.user,
            idempotency_key=data["idempotency_key"],
            origin="api",
            **_judgment_arguments(data, assignment.display_order),
        )
        judgment = _judgments_queryset().get(pk=judgment.pk)
        return ApiResponse(s.JudgmentSerializer(judgment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.SkipSerializer, responses=s.AssignmentSerializer)
    @action(detail=True, methods=["post"])
    def skip(self, request, pk=None):
        """Give the task back with a reason."""
        data = _validated(s.SkipSerializer, request.data)
        assignment = services.skip_task(
            assignment=self.get_object(), annotator=request.user, reason=data["reason"]
        )
        return ApiResponse(s.AssignmentSerializer(assignment).data)


class JudgmentViewSet(
    OwnRowsForAnnotators,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    ApiViewSet,
):
    """Judgments. Annotators see and edit their own only."""

    queryset = _judgments_queryset().order_by("id")
    serializer_class = s.JudgmentSerializer
    filterset_class = JudgmentFilter
    ordering_fields = ["id", "created_at"]
    http_method_names = ["get", "put", "post", "head", "options"]
    default_roles = ANNOTATING
    action_roles = {"flag": STAFF}

    @extend_schema(request=s.EditJudgmentSerializer, responses=s.JudgmentSerializer)
    def update(self, request, pk=None):
        """Replace one's own judgment within the project's edit window."""
        judgment = self.get_object()
        data = _validated(s.EditJudgmentSerializer, request.data)
        display_order = judgment.assignment.display_order if judgment.assignment_id else []
        edited = services.edit_judgment(
            judgment=judgment,
            annotator=request.user,
            **_judgment_arguments(data, display_order),
        )
        return ApiResponse(s.JudgmentSerializer(_judgments_queryset().get(pk=edited.pk)).data)

    @extend_schema(request=s.FlagJudgmentSerializer, responses=s.JudgmentSerializer)
    @action(detail=True, methods=["post"])
    def flag(self, request, pk=None):
        """Flag a doubtful judgment with a reason (``flagged: false`` clears it); snapshots with
        the ``exclude_flagged`` filter leave flagged judgments out. Managers and admins."""
        data = _validated(s.FlagJudgmentSerializer, request.data)
        judgment = services.flag_judgment(
            judgment=self.get_object(), by=request.user, flagged=data["flagged"],
            reason=data["reason"],
        )  # fmt: skip
        return ApiResponse(s.JudgmentSerializer(_judgments_queryset().get(pk=judgment.pk)).data)


class DemonstrationViewSet(
    OwnRowsForAnnotators,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    ApiViewSet,
):
    """SFT demonstrations. Annotators see their own only."""

    queryset = Demonstration.objects.prefetch_related("cited_principles").order_by("id")
    serializer_class = s.DemonstrationSerializer
    filterset_class = DemonstrationFilter
    default_roles = ANNOTATING

    @extend_schema(
        request=s.DemonstrationCreateSerializer, responses={201: s.DemonstrationSerializer}
    )
    def create(self, request):
        data = _validated(s.DemonstrationCreateSerializer, request.data)
        task = Task.objects.filter(pk=data["task"]).first()
        if task is None:
            raise DomainError(f"no task {data['task']}")
        based_on = data["based_on"]
        if based_on is not None:
            mine = Assignment.objects.filter(task=task, annotator=request.user).first()
            order = mine.display_order if mine else []
            response_id = _slot_to_id(based_on, order, "based_on")
            based_on = Response.objects.filter(pk=response_id).first()
            if based_on is None:
                raise DomainError("based_on must be one of this task's responses")
        demonstration = services.create_demonstration(
            annotator=request.user,
            task=task,
            text=data["text"],
            based_on=based_on,
            cited=data["cited"],
            idempotency_key=data["idempotency_key"],
            time_spent_ms=data["time_spent_ms"],
        )
        demonstration = self.queryset.get(pk=demonstration.pk)
        return ApiResponse(
            s.DemonstrationSerializer(demonstration).data, status=status.HTTP_201_CREATED
        )


# ---------------------------------------------------------------- snapshots and imports


class SnapshotViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Frozen, content-hashed dataset exports with their filters and provenance."""

    queryset = DatasetSnapshot.objects.order_by("-id")
    serializer_class = s.SnapshotSerializer
    filterset_class = SnapshotFilter
    ordering_fields = ["id", "created_at", "row_count"]
    ordering = ["-id"]
    action_roles = {"list": READERS, "retrieve": READERS, "download": READERS, "create": STAFF}

    @extend_schema(
        request=s.SnapshotCreateSerializer,
        responses={201: s.SnapshotSerializer, 202: s.SnapshotSerializer},
    )
    def create(self, request):
        """Build a snapshot: inline when small (201, ready or failed), else on a Celery worker
        (202, ``status=building`` with ``progress``)."""
        data = _validated(s.SnapshotCreateSerializer, request.data)
        snapshot = snapshots.create_snapshot(
            project=data["project"],
            kind=data["kind"],
            fmt=data["format"],
            aggregation=data["aggregation"],
            filters=data["filters"],
            name=data["name"],
            created_by=request.user,
            run=data["run"],
        )
        code = (
            status.HTTP_202_ACCEPTED
            if snapshot.status == DatasetSnapshot.Status.BUILDING
            else status.HTTP_201_CREATED
        )
        return ApiResponse(s.SnapshotSerializer(snapshot).data, status=code)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            409: OpenApiResponse(description="Not ready"),
        }
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def download(self, request, pk=None):
        """The snapshot file (JSONL or Parquet); ``ETag`` is its sha256."""
        snapshot = self.get_object()
        if snapshot.status != DatasetSnapshot.Status.READY:
            return ApiResponse({"detail": f"snapshot is {snapshot.status}"}, status=409)
        path = snapshots.artifact_file(snapshot)
        if not path.is_file():
            raise exceptions.NotFound("the snapshot file is missing from ARTIFACT_ROOT")
        name = f"{snapshot.project.slug}-{snapshot.kind}-{snapshot.pk}{path.suffix}"
        response = FileResponse(path.open("rb"), as_attachment=True, filename=name)
        response["ETag"] = f'"{snapshot.sha256}"'
        response["X-Content-SHA256"] = snapshot.sha256
        return response


class ImportJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Import jobs with their progress (0 → 0.5 validating, then writing, then 1)."""

    queryset = ImportJob.objects.order_by("-id")
    serializer_class = s.ImportJobSerializer
    filterset_class = ImportJobFilter
    ordering = ["-id"]


# ---------------------------------------------------------------- webhooks


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    """HMAC-signed event subscriptions (admins only)."""

    queryset = Webhook.objects.order_by("id")
    serializer_class = s.WebhookSerializer
    filterset_class = WebhookFilter
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    default_roles = ADMIN

    @extend_schema(responses={201: s.WebhookCreatedSerializer})
    def create(self, request):
        data = _validated(s.WebhookSerializer, request.data)
        from annotation import webhooks

        hook = webhooks.create_webhook(created_by=request.user, **data)
        return ApiResponse(s.WebhookCreatedSerializer(hook).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=["pending", "delivered", "failed"]),
            OpenApiParameter("event", str, enum=list(Webhook.Event.values)),
        ],
        responses=s.WebhookDeliverySerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request, pk=None):
        """Recent deliveries of this webhook, newest first."""
        hook = self.get_object()
        filterset = WebhookDeliveryFilter(
            request.query_params, queryset=hook.deliveries.order_by("-id")
        )
        if not filterset.is_valid():
            raise serializers.ValidationError(filterset.errors)
        page = self.paginate_queryset(filterset.qs)
        return self.get_paginated_response(s.WebhookDeliverySerializer(page, many=True).data)


__all__ = [
    "AssignmentViewSet",
    "DemonstrationViewSet",
    "ImportJobViewSet",
    "JudgmentViewSet",
    "MeView",
    "PrincipleSetViewSet",
    "PrincipleViewSet",
    "ProjectViewSet",
    "PromptViewSet",
    "ResponseViewSet",
    "SnapshotViewSet",
    "TaskViewSet",
    "WebhookViewSet",
]
