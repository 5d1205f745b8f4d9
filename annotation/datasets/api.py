"""REST endpoints for snapshots and import jobs."""

from __future__ import annotations

from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response as ApiResponse

from annotation.datasets import serializers, snapshots
from annotation.datasets.importers import jobs, prompts
from annotation.filters import (
    ImportJobFilter,
    SnapshotFilter,
)
from annotation.models import (
    DatasetSnapshot,
    ImportJob,
)
from annotation.permissions import (
    READERS,
    STAFF,
    MemberRows,
)
from annotation.projects import serializers as project_serializers
from common.api import ApiViewSet, validated
from common.errors import DomainError

EXPORT_PARAMETERS = [
    OpenApiParameter("kind", str, enum=list(DatasetSnapshot.Kind.values), default="preference"),
    OpenApiParameter(
        "file_format",
        str,
        enum=list(snapshots.STREAM_FORMATS),
        default="jsonl",
        description="csv: one header row, the kind's snapshot columns; nested values as JSON "
        "text; text cells starting with = + - @ (a spreadsheet formula) prefixed with '",
    ),
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


class SnapshotViewSet(MemberRows, mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Frozen, content-hashed dataset exports with their filters and provenance."""

    queryset = DatasetSnapshot.objects.order_by("-id")
    serializer_class = serializers.SnapshotSerializer
    filterset_class = SnapshotFilter
    ordering_fields = ["id", "created_at", "row_count"]
    ordering = ["-id"]
    action_roles = {"list": READERS, "retrieve": READERS, "download": READERS, "create": STAFF}
    member_roles = READERS

    @extend_schema(
        request=serializers.SnapshotCreateSerializer,
        responses={201: serializers.SnapshotSerializer, 202: serializers.SnapshotSerializer},
    )
    def create(self, request):
        """Build a snapshot: inline when small (201, ready or failed), else on a Celery worker
        (202, ``status=building`` with ``progress``)."""
        data = validated(serializers.SnapshotCreateSerializer, request.data)
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
        return ApiResponse(serializers.SnapshotSerializer(snapshot).data, status=code)

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
    serializer_class = serializers.ImportJobSerializer
    filterset_class = ImportJobFilter
    ordering = ["-id"]


class ProjectDataActions:
    """A project's data actions (``ProjectViewSet``): bulk prompts, file upload, streamed export."""

    @extend_schema(
        request=project_serializers.BulkPromptsSerializer,
        responses={201: project_serializers.BulkResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="prompts")
    def bulk_prompts(self, request, pk=None):
        """Create prompts with their responses and one task each, all or nothing. Records use
        the JSONL import format; an error names the record (1-based). Answers the task count
        and the new task ids, in the records' order."""
        project = self.get_object()
        validated(project_serializers.BulkPromptsSerializer, request.data)
        task_ids = prompts.import_records(project=project, records=request.data["records"])
        return ApiResponse(
            {"tasks": len(task_ids), "task_ids": task_ids}, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        request={"multipart/form-data": serializers.ImportUploadSerializer},
        responses={
            201: serializers.ImportJobSerializer,
            202: serializers.ImportJobSerializer,
            400: OpenApiResponse(description="Malformed file (nothing written)"),
        },
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
        data = validated(serializers.ImportUploadSerializer, request.data)
        upload = data.pop("file")
        fmt = data.pop("format")
        job = jobs.create_import_job(
            project=project, upload=upload, fmt=fmt, options=data, created_by=request.user
        )
        job = jobs.start_import_job(job, size=upload.size)
        body = serializers.ImportJobSerializer(job).data
        if job.status == ImportJob.Status.QUEUED:
            return ApiResponse(body, status=status.HTTP_202_ACCEPTED)
        if job.status == ImportJob.Status.FAILED:
            return ApiResponse({"detail": job.error, "job": body}, status=400)
        return ApiResponse(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=EXPORT_PARAMETERS,
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def export(self, request, pk=None):
        """Stream an export of any size as JSON Lines or CSV (``file_format``), no snapshot
        recorded. ``EXPORT_STREAM_MAX_JUDGMENTS`` (0: none) caps the records it reads."""
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
        fmt = params.get("file_format", "jsonl")
        chunks = snapshots.export_stream(
            project=project,
            kind=kind,
            aggregation=params.get("aggregation", "raw"),
            filters=filters,
            fmt=fmt,
        )
        content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        response = StreamingHttpResponse(chunks, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-{kind}.{fmt}"'
        return response
