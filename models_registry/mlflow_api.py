"""``/api/2.0/mlflow/``: MLflow's model-registry REST paths with MLflow's request and response
shapes and error bodies, so the real MLflow client (``MlflowClient(tracking_uri=…)``) lists,
reads and promotes our model versions: registered-models/search|get|get-latest-versions and
model-versions/search|get|transition-stage|get-download-uri.

Thin, like ``registry_api`` (whose serializers, paging and role sets it reuses): reads for
admins, managers and viewers, transitions for admins and managers. Authentication: an API token
as ``Authorization: Bearer <token>`` (``MLFLOW_TRACKING_TOKEN``) or ``Token <token>``, or a
session. Errors are ``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": …}`` with the HTTP
status MLflow uses. Our own facts (kind, sha256, size, lineage) travel as version tags.
"""

from __future__ import annotations

from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response

from common.auth import BearerTokenAuthentication, CachedTokenAuthentication
from common.query_limits import time_limit
from models_registry import selectors, services
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.registry_api import (
    LatestSerializer,
    NameSerializer,
    RegistryView,
    SearchSerializer,
    TransitionSerializer,
    VersionRefSerializer,
    body_data,
    millis,
    paged,
    query_data,
    transition_stage,
    version_ref,
)

#: the most rows one search answers; a larger ``max_results`` gets this many and a page token
PAGE_CAP = 1000
#: MLflow's error codes by HTTP status
ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "ENDPOINT_NOT_FOUND",
    409: "RESOURCE_ALREADY_EXISTS",
    413: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}
STAGE_LABELS = dict(ModelVersion.Stage.choices)


def _tags(pairs: dict) -> list[dict]:
    return [{"key": k, "value": str(v)} for k, v in pairs.items() if v not in (None, "")]


def mlflow_version(version: ModelVersion) -> dict:
    """A version as MLflow's ``ModelVersion`` message; kind, sha256, size, lineage as tags."""
    run = getattr(version, "training_run", None)
    created = millis(version.created_at)
    parents = ", ".join(
        f"{link.role}={selectors.label(link.parent)}" for link in version.parent_links.all()
    )
    return {
        "name": version.registered_model.name,
        "version": str(version.version),
        "creation_timestamp": created,
        "last_updated_timestamp": created,
        "current_stage": STAGE_LABELS[version.stage],
        "description": "",
        "source": version.artifact_uri,
        "run_id": str(run.pk) if run is not None else "",
        "status": "READY",
        "tags": _tags(
            {
                "kind": version.registered_model.kind,
                "sha256": version.sha256,
                "size_bytes": version.size_bytes,
                "parents": parents,
                "dataset_snapshot": version.dataset_snapshot_id,
                "principle_set": version.principle_set.label if version.principle_set_id else "",
            }
        ),
        "aliases": [],
    }


def mlflow_model(model: RegisteredModel) -> dict:
    """A registered model as MLflow's ``RegisteredModel`` message (latest version per stage)."""
    created = millis(model.created_at)
    return {
        "name": model.name,
        "creation_timestamp": created,
        "last_updated_timestamp": created,
        "description": model.description,
        "latest_versions": [mlflow_version(v) for v in selectors.latest_versions(model)],
        "tags": _tags({"kind": model.kind}),
        "aliases": [],
    }


class MlflowSearchSerializer(SearchSerializer):
    """MLflow's search request: its clients ask for up to 10000 versions by default; a page
    holds at most ``PAGE_CAP`` (the token says where the next one starts)."""

    max_results = serializers.IntegerField(min_value=1, max_value=200_000, default=100)

    def validate_max_results(self, value: int) -> int:
        return min(value, PAGE_CAP)

    def to_internal_value(self, data):  # an empty page token is the first page
        if hasattr(data, "get") and data.get("page_token") == "":
            data = {k: v for k, v in data.items() if k != "page_token"}
        return super().to_internal_value(data)


class MlflowView(RegistryView):
    """Bearer tokens first (so a 401 says ``WWW-Authenticate: Bearer``); errors in MLflow's
    shape."""

    authentication_classes = [
        BearerTokenAuthentication,
        CachedTokenAuthentication,
        SessionAuthentication,
    ]

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        data = response.data
        if isinstance(data, dict) and set(data) <= {"detail", "code"}:
            message = str(data.get("detail", ""))
        elif isinstance(data, dict):
            message = "; ".join(
                f"{field}: {' '.join(map(str, errors if isinstance(errors, list) else [errors]))}"
                for field, errors in data.items()
            )
        else:
            message = str(data)
        code = ERROR_CODES.get(response.status_code, "INTERNAL_ERROR")
        response.data = {"error_code": code, "message": message}
        return response


def _search(data: dict, queryset, render, key: str) -> Response:
    """One page of a search as MLflow answers it (``next_page_token`` only when more follow)."""
    with time_limit():
        rows, token = paged(queryset, data, render)
    return Response({key: rows, **({"next_page_token": token} if token else {})})


class SearchRegisteredModels(MlflowView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """MLflow ``registered-models/search`` (filter, max_results, order_by, page_token)."""
        data = query_data(MlflowSearchSerializer, request)
        qs = selectors.search_models(data["filter"], data["order_by"])
        return _search(data, qs, mlflow_model, "registered_models")


class GetRegisteredModel(MlflowView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """MLflow ``registered-models/get``."""
        data = query_data(NameSerializer, request)
        return Response({"registered_model": mlflow_model(RegisteredModel.objects.get(**data))})


class GetLatestVersions(MlflowView):
    action = "read"  # a POST that only reads (MLflow's clients POST it)

    def _answer(self, data: dict) -> Response:
        model = RegisteredModel.objects.get(name=data["name"])
        found = selectors.latest_versions(model, data["stages"])
        return Response({"model_versions": [mlflow_version(v) for v in found]})

    @extend_schema(request=LatestSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        """MLflow ``registered-models/get-latest-versions``: the newest version per stage."""
        return self._answer(body_data(LatestSerializer, request))

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """The same as a GET (MLflow serves both)."""
        return self._answer(query_data(LatestSerializer, request))


class SearchModelVersions(MlflowView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """MLflow ``model-versions/search``, e.g. ``name='rm'`` (the fields of
        ``/api/v1/registry/model-versions/search``)."""
        data = query_data(MlflowSearchSerializer, request)
        qs = selectors.search_versions(data["filter"], data["order_by"])
        return _search(data, qs, mlflow_version, "model_versions")


class GetModelVersion(MlflowView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """MLflow ``model-versions/get``."""
        version = version_ref(query_data(VersionRefSerializer, request))
        return Response({"model_version": mlflow_version(version)})


class TransitionStage(MlflowView):
    @extend_schema(request=TransitionSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        """MLflow ``model-versions/transition-stage`` (``archive_existing_versions``), logged
        with who did it."""
        return Response({"model_version": mlflow_version(transition_stage(request))})


class GetDownloadUri(MlflowView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """MLflow ``model-versions/get-download-uri``: the artifact's URI (a path or an fsspec
        URL such as ``s3://…``); ``download_url`` streams it as a tar from here (staff)."""
        version = version_ref(query_data(VersionRefSerializer, request))
        query = f"?name={version.registered_model.name}&version={version.version}"
        stored = services.artifact_location(version.artifact_uri) is not None
        return Response(
            {
                "artifact_uri": version.artifact_uri,
                "sha256": version.sha256,
                "download_url": (
                    request.build_absolute_uri(reverse("registry-api:download") + query)
                    if stored
                    else None
                ),
            }
        )


app_name = "mlflow-api"
urlpatterns = [
    path("registered-models/search", SearchRegisteredModels.as_view(), name="model-search"),
    path("registered-models/get", GetRegisteredModel.as_view(), name="model-get"),
    path("registered-models/get-latest-versions", GetLatestVersions.as_view(), name="latest"),
    path("model-versions/search", SearchModelVersions.as_view(), name="version-search"),
    path("model-versions/get", GetModelVersion.as_view(), name="version-get"),
    path("model-versions/transition-stage", TransitionStage.as_view(), name="transition"),
    path("model-versions/get-download-uri", GetDownloadUri.as_view(), name="download-uri"),
]
