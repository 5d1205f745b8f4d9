"""``/api/v1/registry/``: the model registry API, shaped like MLflow's REST API so MLOps users
feel at home (``registered-models/create|get|search|get-latest-versions``,
``model-versions/create|get|search|transition-stage|get-download-uri``), plus lineage, model
cards, side-by-side comparison, artifact download, (re)profiling, the closed loop's generation
jobs and the arena leaderboard.

Thin: validate with a serializer, call a service or selector, return JSON. Roles: reads for
admins, managers and viewers (auditors); writes and artifact downloads for admins and managers.
"""

from __future__ import annotations

from pathlib import Path

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import DatasetSnapshot, Project
from annotation.permissions import READERS, STAFF
from common.api import ApiMixin
from common.errors import DomainError
from common.query_limits import time_limit
from models_registry import selectors, services
from models_registry.artifacts import merged_tar, stream_tar
from models_registry.cards import render_model_card
from models_registry.models import GenerationJob, ModelParent, ModelVersion, RegisteredModel
from models_registry.storage import local_copy, remote_entries

MAX_INT = 2**31 - 1
STAGES = ModelVersion.Stage.choices
KINDS = RegisteredModel.Kind.choices
QUEUES = [("cpu", "CPU"), ("gpu", "GPU")]  # as TrainingRun.Queue (one enum in the schema)

# ---------------------------------------------------------------- JSON shapes


def millis(moment) -> int:
    """A moment as MLflow's timestamps: whole milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def version_json(version: ModelVersion, request=None) -> dict:
    """A model version in MLflow's shape (``current_stage``, ``source``, ``run_id`` …) plus
    lineage pointers."""
    query = f"?name={version.registered_model.name}&version={version.version}"
    run = getattr(version, "training_run", None)
    return {
        "name": version.registered_model.name,
        "version": str(version.version),
        "id": version.pk,
        "kind": version.registered_model.kind,
        "current_stage": version.stage,
        "source": version.artifact_uri,
        "run_id": str(run.pk) if run is not None else None,
        "status": "READY",
        "creation_timestamp": millis(version.created_at),
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
        "artifact_format": version.artifact_format,
        "parents": [
            {
                "role": link.role,
                "name": link.parent.registered_model.name,
                "version": str(link.parent.version),
            }
            for link in version.parent_links.all()
        ],
        "dataset_snapshot": version.dataset_snapshot_id,
        "principle_set": version.principle_set.label if version.principle_set_id else None,
        "annotator": version.annotator.username if version.annotator_id else None,
        "model_discretion_status": (version.model_discretion_profile or {}).get("status"),
        "links": {
            "lineage": reverse("registry-api:lineage") + query,
            "model_card": reverse("registry-api:model-card") + query,
        },
    }


def model_json(model: RegisteredModel, with_latest: bool = True) -> dict:
    out = {
        "name": model.name,
        "id": model.pk,
        "kind": model.kind,
        "description": model.description,
        "creation_timestamp": millis(model.created_at),
    }
    if with_latest:
        out["latest_versions"] = [
            version_json(v) for v in selectors.latest_versions(model) if v is not None
        ]
    return out


# ---------------------------------------------------------------- request serializers


class NameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


DOWNLOAD_FORMATS = ("stored", "adapter", "merged")


class VersionRefSerializer(NameSerializer):
    version = serializers.IntegerField(min_value=1, max_value=MAX_INT)


class SearchSerializer(serializers.Serializer):
    filter = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    order_by = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, max_length=5
    )
    max_results = serializers.IntegerField(min_value=1, max_value=1000, default=100)
    page_token = serializers.IntegerField(min_value=0, max_value=MAX_INT, default=0)


class CreateModelSerializer(NameSerializer):
    kind = serializers.ChoiceField(choices=KINDS)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class StageField(serializers.ChoiceField):
    """A stage in any case (MLflow's clients send ``Production``; we store ``production``)."""

    def __init__(self, **kwargs):
        super().__init__(choices=STAGES, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data.lower() if isinstance(data, str) else data)


class LatestSerializer(NameSerializer):
    stages = serializers.ListField(child=StageField(), required=False, default=list)


class ParentRefSerializer(VersionRefSerializer):
    role = serializers.ChoiceField(choices=ModelParent.Role.values)


class CreateVersionSerializer(NameSerializer):
    kind = serializers.ChoiceField(choices=KINDS)
    source = serializers.CharField(max_length=500)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    parents = ParentRefSerializer(many=True, required=False, default=list)
    dataset_snapshot = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_INT
    )
    eval_metrics = serializers.DictField(required=False, default=dict)
    sha256 = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")


class TransitionSerializer(VersionRefSerializer):
    stage = StageField()
    archive_existing_versions = serializers.BooleanField(default=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class CardSerializer(VersionRefSerializer):
    format = serializers.ChoiceField(choices=["markdown", "json"], default="markdown")


class CompareSerializer(serializers.Serializer):
    a = serializers.CharField(max_length=220, help_text="name@version")
    b = serializers.CharField(max_length=220, help_text="name@version")


class ProfileSerializer(VersionRefSerializer):
    probe_project = serializers.SlugField(required=False, allow_blank=True, max_length=100)
    method = serializers.ChoiceField(choices=services.PROFILE_METHODS, default="auto")
    reward_model = VersionRefSerializer(required=False, allow_null=True)
    queue = serializers.ChoiceField(choices=QUEUES, default="cpu")


class GenerateSerializer(serializers.Serializer):
    project = serializers.SlugField(max_length=100)
    models = VersionRefSerializer(many=True, min_length=1, max_length=8)
    samples_per_model = serializers.IntegerField(min_value=1, max_value=16, default=2)
    max_prompts = serializers.IntegerField(min_value=1, max_value=100_000, default=50)
    max_new_tokens = serializers.IntegerField(min_value=1, max_value=4096, default=48)
    temperature = serializers.FloatField(min_value=0.01, max_value=5.0, default=1.0)
    top_p = serializers.FloatField(min_value=0.01, max_value=1.0, default=1.0)
    seed = serializers.IntegerField(min_value=0, max_value=MAX_INT, default=0)
    engine = serializers.ChoiceField(choices=services.ENGINES, default="auto")
    queue = serializers.ChoiceField(choices=QUEUES, default="cpu")


class JobRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_INT)


class LeaderboardSerializer(serializers.Serializer):
    project = serializers.SlugField(max_length=100)
    principle = serializers.CharField(required=False, allow_blank=True, max_length=120)
    scope = serializers.ChoiceField(choices=["humans", "all"], default="humans")
    both_bad = serializers.ChoiceField(choices=["tie", "ignore"], default="tie")
    n_boot = serializers.IntegerField(min_value=0, max_value=1000, default=200)


def query_data(serializer_class, request) -> dict:
    data = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        field = serializer_class().fields.get(key)
        data[key] = values if isinstance(field, serializers.ListField) else values[-1]
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def body_data(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def version_ref(data: dict) -> ModelVersion:
    return selectors.get_version(name=data["name"], version=data["version"])


def _label_version(text: str) -> ModelVersion:
    name, _, number = text.rpartition("@")
    if not name or not number:
        raise DomainError(f"{text!r}: write a version as name@version")
    return selectors.get_version(name=name, version=number)


def paged(qs, data: dict, render) -> tuple[list, str | None]:
    start, size = data["page_token"], data["max_results"]
    rows = list(qs[start : start + size + 1])
    token = str(start + size) if len(rows) > size else None
    return [render(row) for row in rows[:size]], token


def _params(serializer_class) -> list[OpenApiParameter]:
    out = []
    for name, field in serializer_class().fields.items():
        kind = OpenApiTypes.INT if isinstance(field, serializers.IntegerField) else OpenApiTypes.STR
        if isinstance(field, serializers.ListField):
            out.append(
                OpenApiParameter(
                    name,
                    {"type": "array", "items": {"type": "string"}},
                    required=False,
                    explode=True,
                )
            )
            continue
        enum = list(field.choices) if isinstance(field, serializers.ChoiceField) else None
        out.append(OpenApiParameter(name, kind, required=field.required, enum=enum))
    return out


class RegistryView(ApiMixin, APIView):
    action_roles = {"read": READERS, "write": STAFF}
    pagination_class = None


# ---------------------------------------------------------------- registered models


class CreateRegisteredModel(RegistryView):
    @extend_schema(request=CreateModelSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        """Create a registered model (MLflow ``registered-models/create``)."""
        data = body_data(CreateModelSerializer, request)
        model, created = RegisteredModel.objects.get_or_create(
            name=data["name"],
            defaults={"kind": data["kind"], "description": data.get("description", "")},
        )
        if not created:
            raise DomainError(f"registered model {data['name']!r} already exists")
        return Response({"registered_model": model_json(model)}, status=status.HTTP_201_CREATED)


class GetRegisteredModel(RegistryView):
    @extend_schema(parameters=_params(NameSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """A registered model with its latest version per stage."""
        data = query_data(NameSerializer, request)
        model = RegisteredModel.objects.get(name=data["name"])
        return Response({"registered_model": model_json(model)})


class SearchRegisteredModels(RegistryView):
    @extend_schema(parameters=_params(SearchSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """Registered models matching an MLflow filter (``name LIKE 'rm-%'``, ``kind = 'sft'``)."""
        data = query_data(SearchSerializer, request)
        qs = selectors.search_models(data["filter"], data["order_by"])
        with time_limit():
            rows, token = paged(qs, data, model_json)
        return Response({"registered_models": rows, "next_page_token": token})


class LatestVersions(RegistryView):
    @extend_schema(parameters=_params(LatestSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """The newest version in each stage (or in the given ``stages``)."""
        data = query_data(LatestSerializer, request)
        model = RegisteredModel.objects.get(name=data["name"])
        found = selectors.latest_versions(model, data["stages"])
        return Response({"model_versions": [version_json(v) for v in found]})


# ---------------------------------------------------------------- model versions


class CreateModelVersion(RegistryView):
    @extend_schema(request=CreateVersionSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        """Register a new version from an artifact under the artifact root (hashed here) or a
        remote URI, with its parents and dataset snapshot (MLflow ``model-versions/create``)."""
        data = body_data(CreateVersionSerializer, request)
        parents = [(p["role"], version_ref(p)) for p in data["parents"]]
        snapshot = (
            DatasetSnapshot.objects.get(pk=data["dataset_snapshot"])
            if data.get("dataset_snapshot")
            else None
        )
        version = services.register_from_source(
            name=data["name"],
            kind=data["kind"],
            source=data["source"],
            description=data.get("description", ""),
            parents=parents,
            dataset_snapshot=snapshot,
            eval_metrics=data["eval_metrics"],
            sha256=data["sha256"],
        )
        version = selectors.versions().get(pk=version.pk)
        return Response({"model_version": version_json(version)}, status=status.HTTP_201_CREATED)


class GetModelVersion(RegistryView):
    @extend_schema(parameters=_params(VersionRefSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """One version (MLflow ``model-versions/get``)."""
        version = version_ref(query_data(VersionRefSerializer, request))
        return Response({"model_version": version_json(version)})


class SearchModelVersions(RegistryView):
    @extend_schema(parameters=_params(SearchSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """Versions matching an MLflow filter, e.g. ``name = 'rm' AND stage = 'production'``
        (fields: name, kind, version, stage, source, sha256, run_id, dataset_snapshot,
        principle_set; operators =, !=, LIKE, ILIKE, NOT LIKE, IN). version, run_id and
        dataset_snapshot take whole numbers (400 otherwise); a search running past
        ``QUERY_TIME_LIMIT_MS`` is cancelled (503)."""
        data = query_data(SearchSerializer, request)
        qs = selectors.search_versions(data["filter"], data["order_by"])
        with time_limit():
            rows, token = paged(qs, data, version_json)
        return Response({"model_versions": rows, "next_page_token": token})


class TransitionStage(RegistryView):
    @extend_schema(request=TransitionSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        """Move a version to none / staging / production / archived; logged with who and why
        (MLflow ``model-versions/transition-stage``)."""
        return Response({"model_version": version_json(transition_stage(request))})


def transition_stage(request) -> ModelVersion:
    """A transition-stage request applied (both this API and MLflow's): the version as stored."""
    data = body_data(TransitionSerializer, request)
    version = services.set_stage(
        version_ref(data),
        data["stage"],
        request.user,
        data["comment"],
        archive_existing=data["archive_existing_versions"],
    )
    return selectors.versions().get(pk=version.pk)


class StageHistory(RegistryView):
    @extend_schema(parameters=_params(VersionRefSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """The stage audit log of a version, newest first."""
        version = version_ref(query_data(VersionRefSerializer, request))
        return Response({"stage_changes": selectors.stage_history(version)})


class DownloadUri(RegistryView):
    @extend_schema(parameters=_params(VersionRefSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """Where the artifact lives, and the URL that streams it (staff)."""
        version = version_ref(query_data(VersionRefSerializer, request))
        query = f"?name={version.registered_model.name}&version={version.version}"
        stored = services.artifact_location(version.artifact_uri) is not None
        return Response(
            {
                "artifact_uri": version.artifact_uri,
                "sha256": version.sha256,
                "download_url": reverse("registry-api:download") + query if stored else None,
                "merged_download_url": reverse("registry-api:download") + query + "&format=merged"
                if stored and version.artifact_format == ModelVersion.ArtifactFormat.ADAPTER
                else None,
            }
        )


class _FormatIsNotARenderer(DefaultContentNegotiation):
    """``?format=`` names the artifact's format on a download, not DRF's renderer override."""

    class settings:
        URL_FORMAT_OVERRIDE = None


class DownloadSerializer(VersionRefSerializer):
    format = serializers.ChoiceField(choices=DOWNLOAD_FORMATS, default="stored")


class DownloadArtifacts(RegistryView):
    action_roles = {"read": STAFF}
    content_negotiation_class = _FormatIsNotARenderer

    @extend_schema(
        parameters=_params(DownloadSerializer),
        responses={(200, "application/x-tar"): OpenApiTypes.BINARY},
    )
    def get(self, request):
        """The artifact as a streamed tar (admins and managers; artifacts under the artifact
        root or in the configured object store). ``format=merged``: an adapter version merged
        into its base (full weights)."""
        data = query_data(DownloadSerializer, request)
        version = version_ref(data)
        location = services.artifact_location(version.artifact_uri)
        if location is None:
            raise DomainError("this version's artifact is not stored here")
        return artifact_response(version, location, data["format"])


def artifact_response(
    version: ModelVersion, location: Path | str, fmt: str = "stored"
) -> StreamingHttpResponse:
    """The artifact as stored (an adapter stays an adapter; ``adapter`` says so and is refused
    for full weights), or ``merged``: an adapter merged into its base, for tools that know no
    adapters (refused for full weights: there is nothing to merge). ``location``: a local
    path, or a URL in the object store (its manifest checked against the version's sha256
    before the first byte)."""
    if fmt not in DOWNLOAD_FORMATS:
        raise DomainError(f"format must be one of {', '.join(DOWNLOAD_FORMATS)}, got {fmt!r:.50}")
    is_adapter = version.artifact_format == ModelVersion.ArtifactFormat.ADAPTER
    if fmt != "stored" and not is_adapter:
        raise DomainError(f"{version} is full weights, not an adapter: download it as stored")
    filename = f"{version.registered_model.name}-v{version.version}"
    if fmt == "merged":
        root = location if isinstance(location, Path) else local_copy(location, version.sha256)
        response = StreamingHttpResponse(merged_tar(root), content_type="application/x-tar")
        filename += "-merged"
    else:
        remote = not isinstance(location, Path)
        entries = remote_entries(location, version.sha256) if remote else location
        response = StreamingHttpResponse(stream_tar(entries), content_type="application/x-tar")
        if version.sha256:  # the digest of the stored artifact, not of a merge made now
            response["X-Artifact-SHA256"] = version.sha256
    response["Content-Disposition"] = f'attachment; filename="{filename}.tar"'
    response["X-Artifact-Format"] = "full" if fmt == "merged" else version.artifact_format
    return response


class Lineage(RegistryView):
    @extend_schema(parameters=_params(VersionRefSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """What fed this model: parents back to the base, snapshots (filters, counts, hash),
        principle-set versions with diffs, annotators with counts, both discretion profiles."""
        version = version_ref(query_data(VersionRefSerializer, request))
        return Response(selectors.lineage(version))


class ModelCard(RegistryView):
    @extend_schema(
        parameters=_params(CardSerializer),
        responses={
            (200, "text/markdown"): OpenApiTypes.STR,
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
    )
    def get(self, request):
        """The model card generated from the lineage record (markdown download, or JSON)."""
        data = query_data(CardSerializer, request)
        version = version_ref(data)
        card = render_model_card(version)
        if data["format"] == "json":
            return Response(
                {
                    "name": version.registered_model.name,
                    "version": str(version.version),
                    "markdown": card,
                }
            )
        response = HttpResponse(card, content_type="text/markdown; charset=utf-8")
        filename = f"{version.registered_model.name}-v{version.version}-model-card.md"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class Compare(RegistryView):
    @extend_schema(parameters=_params(CompareSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """Two versions side by side: metrics, discretion profiles, principle-set diff."""
        data = query_data(CompareSerializer, request)
        return Response(selectors.compare(_label_version(data["a"]), _label_version(data["b"])))


class Profile(RegistryView):
    @extend_schema(request=ProfileSerializer, responses={202: OpenApiTypes.OBJECT})
    def post(self, request):
        """(Re)measure the version's own discretion on a worker: optionally on a chosen probe
        project, and for a policy by log-likelihood, likelihood ratio or a reward model."""
        data = body_data(ProfileSerializer, request)
        version = version_ref(data)
        probe = (
            Project.objects.get(slug=data["probe_project"]) if data.get("probe_project") else None
        )
        reward = version_ref(data["reward_model"]) if data.get("reward_model") else None
        services.request_profile(
            version=version,
            probe_project=probe,
            method=data["method"],
            reward_version=reward,
            queue=data["queue"],
        )
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)


# ---------------------------------------------------------------- closed loop and arena


def job_json(job: GenerationJob) -> dict:
    return {
        "id": job.pk,
        "project": job.project.slug,
        "models": [
            selectors.label(v) for v in job.model_versions.select_related("registered_model")
        ],
        "params": job.params,
        "queue": job.queue,
        "status": job.status,
        "progress": job.progress,
        "engine": job.engine,
        "prompt_count": job.prompt_count,
        "task_count": job.task_count,
        "response_count": job.response_count,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


class CreateGenerationJob(RegistryView):
    @extend_schema(request=GenerateSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        """Queue "generate candidates": registered policies sample responses to the project's
        prompts, which become compare (2 responses) or rank tasks."""
        data = body_data(GenerateSerializer, request)
        job = services.request_generation(
            project=Project.objects.get(slug=data["project"]),
            versions=[version_ref(ref) for ref in data["models"]],
            samples_per_model=data["samples_per_model"],
            max_prompts=data["max_prompts"],
            max_new_tokens=data["max_new_tokens"],
            temperature=data["temperature"],
            top_p=data["top_p"],
            seed=data["seed"],
            engine=data["engine"],
            queue=data["queue"],
            created_by=request.user,
        )
        return Response({"generation_job": job_json(job)}, status=status.HTTP_201_CREATED)


class GetGenerationJob(RegistryView):
    action_roles = {"read": STAFF}

    @extend_schema(parameters=_params(JobRefSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """A generation job's status and counts."""
        data = query_data(JobRefSerializer, request)
        job = GenerationJob.objects.select_related("project").get(pk=data["id"])
        return Response({"generation_job": job_json(job)})


class Leaderboard(RegistryView):
    @extend_schema(parameters=_params(LeaderboardSerializer), responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """Arena: Bradley–Terry scores (Elo scale) with bootstrap intervals, Elo and win / loss /
        tie counts of every response source, overall and per principle."""
        data = query_data(LeaderboardSerializer, request)
        project = Project.objects.select_related("principle_set").get(slug=data["project"])
        return Response(
            selectors.arena_leaderboard(
                project,
                principle=data.get("principle") or None,
                scope=data["scope"],
                both_bad=data["both_bad"],
                n_boot=data["n_boot"],
            )
        )


app_name = "registry-api"
urlpatterns = [
    path("registered-models/create", CreateRegisteredModel.as_view(), name="model-create"),
    path("registered-models/get", GetRegisteredModel.as_view(), name="model-get"),
    path("registered-models/search", SearchRegisteredModels.as_view(), name="model-search"),
    path("registered-models/get-latest-versions", LatestVersions.as_view(), name="latest"),
    path("model-versions/create", CreateModelVersion.as_view(), name="version-create"),
    path("model-versions/get", GetModelVersion.as_view(), name="version-get"),
    path("model-versions/search", SearchModelVersions.as_view(), name="version-search"),
    path("model-versions/transition-stage", TransitionStage.as_view(), name="transition"),
    path("model-versions/stage-history", StageHistory.as_view(), name="stage-history"),
    path("model-versions/get-download-uri", DownloadUri.as_view(), name="download-uri"),
    path("model-versions/download-artifacts", DownloadArtifacts.as_view(), name="download"),
    path("model-versions/lineage", Lineage.as_view(), name="lineage"),
    path("model-versions/model-card", ModelCard.as_view(), name="model-card"),
    path("model-versions/compare", Compare.as_view(), name="compare"),
    path("model-versions/profile", Profile.as_view(), name="profile"),
    path("generation-jobs/create", CreateGenerationJob.as_view(), name="generation-create"),
    path("generation-jobs/get", GetGenerationJob.as_view(), name="generation-get"),
    path("leaderboard", Leaderboard.as_view(), name="leaderboard"),
]
