"""REST API for training runs: list, read, metric series, launch, cancel, and each kind's
config schema (fields, types, defaults, help). Thin over ``training.services``; registered in
``config.api_urls``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.routers import BaseRouter

from annotation.models import DatasetSnapshot
from annotation.permissions import READERS, STAFF
from common.api import ApiViewSet
from common.filters import FilterSet
from models_registry.models import ModelVersion
from training import services, trainers, validation
from training.judges import api as judges_api
from training.models import RunMetric, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["id", "name", "kind", "status", "queue", "config", "snapshot", "base_model",
                  "base_model_version", "reward_model_version", "output_model_version",
                  "progress", "current_step", "max_steps", "eval_metrics", "error", "created_by",
                  "created_at", "started_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class RunMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunMetric
        fields = ["step", "name", "value", "logged_at"]
        read_only_fields = fields


class LaunchSerializer(serializers.Serializer):
    """What ``POST /training-runs/`` takes; ``config`` is validated by the kind's schema."""

    kind = serializers.ChoiceField(choices=TrainingRun.Kind.choices)
    snapshot = serializers.PrimaryKeyRelatedField(queryset=DatasetSnapshot.objects.all())
    config = serializers.DictField(required=False, default=dict)
    base_model = serializers.CharField(required=False, default="builtin:tiny")
    base_model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    reward_model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    queue = serializers.ChoiceField(choices=TrainingRun.Queue.choices, default="cpu")
    num_processes = serializers.IntegerField(
        default=1, help_text="torchrun processes, 1 to TRAINING_MAX_PROCESSES."
    )
    name = serializers.CharField(required=False, default="", max_length=200)


class ConfigFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    default = serializers.JSONField()
    help = serializers.CharField()
    minimum = serializers.FloatField(allow_null=True)
    maximum = serializers.FloatField(allow_null=True)


class TrainingRunFilter(FilterSet):
    class Meta:
        model = TrainingRun
        fields = ["kind", "status", "queue", "snapshot", "output_model_version"]


class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Training runs (staff and viewers)."""

    queryset = TrainingRun.objects.order_by("-id")
    serializer_class = TrainingRunSerializer
    filterset_class = TrainingRunFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    default_roles = READERS
    action_roles = {"create": STAFF, "cancel": STAFF}

    @extend_schema(request=LaunchSerializer, responses={201: TrainingRunSerializer})
    def create(self, request):
        """Launch a run: every input is checked by ``training.validation`` (400 naming the
        field and the limit) and the config completed with the kind's defaults; 503 when the
        broker cannot take the job (the run is then stored as failed)."""
        data = LaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.launch_run(**data.validated_data, created_by=request.user)
        return Response(TrainingRunSerializer(run).data, status=201)

    @extend_schema(request=None, responses=TrainingRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """A queued run is cancelled at once; a running one stops after its current step."""
        run = services.request_cancel(run=self.get_object())
        return Response(TrainingRunSerializer(run).data)

    @extend_schema(
        parameters=[OpenApiParameter("kind", enum=list(trainers.KINDS), required=True)],
        responses=ConfigFieldSerializer(many=True),
    )
    @action(detail=False, methods=["get"], url_path="config-schema", filter_backends=[],
            pagination_class=None)  # fmt: skip
    def config_schema(self, request):
        """The config fields of a kind, with types, defaults and help (forms are built from it)."""
        kind = request.query_params.get("kind", "")
        if kind not in trainers.KINDS:
            raise ValidationError({"kind": f"choose one of {', '.join(trainers.KINDS)}"})
        fields = trainers.describe_fields(kind, validation.limits())
        return Response(ConfigFieldSerializer(fields, many=True).data)

    @extend_schema(responses=RunMetricSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def metrics(self, request, pk=None):
        """Every logged scalar of the run, by name then step (optionally ``?name=loss``)."""
        run = self.get_object()
        metrics = RunMetric.objects.filter(run=run).order_by("name", "step")
        if request.query_params.get("name"):
            metrics = metrics.filter(name=request.query_params["name"])
        return Response(RunMetricSerializer(metrics[:100_000], many=True).data)


def register(router: BaseRouter) -> None:
    router.register("training-runs", TrainingRunViewSet, basename="trainingrun")
    judges_api.register(router)
