"""REST API for training runs: list, read, metric series, launch, cancel, resume (or extend), and
config schema (fields, types, defaults, help); run groups ("reward per principle"). Thin over
``training.services`` and ``training.groups``; registered in ``config.api_urls``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.routers import BaseRouter

from annotation.datasets.exports.records import AGGREGATIONS
from annotation.models import DatasetSnapshot, Project
from annotation.permissions import READERS, STAFF
from common.api import ApiViewSet
from common.filters import FilterSet
from models_registry.models import ModelVersion
from training import groups, services, trainers, validation
from training.judges import api as judges_api
from training.models import RunGroup, RunMetric, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["id", "name", "kind", "status", "queue", "config", "snapshot", "group",
                  "base_model", "base_model_version", "reward_model_version",
                  "output_model_version", "progress", "current_step", "max_steps", "attempts",
                  "precedence", "eval_metrics", "error", "created_by", "created_at", "started_at",
                  "finished_at", "num_processes", "launch_config", "waiting_reason",
                  "slurm_job_id"]  # fmt: skip
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
    precedence = serializers.DictField(
        required=False, default=dict,
        help_text="GRPO / PPO trained to a precedence of principles: {reward_group | "
        "reward_models, weights_from: declared | explicit | revealed, weights, annotators}.",
    )  # fmt: skip


class ResumeSerializer(serializers.Serializer):
    """What ``POST /training-runs/{id}/resume/`` takes."""

    max_steps = serializers.IntegerField(
        required=False, allow_null=True, default=None,
        help_text="Train to this many steps (extend); default: the run's own max_steps.",
    )  # fmt: skip


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
    action_roles = {"create": STAFF, "cancel": STAFF, "resume": STAFF}

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

    @extend_schema(request=ResumeSerializer, responses=TrainingRunSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Queue a cancelled (or failed) run again from its newest checkpoint; a higher
        ``max_steps`` extends it. 409 when the run is not cancelled or failed, or kept no
        checkpoint; 400 for a ``max_steps`` not above the checkpoint's step."""
        data = ResumeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.resume_run(run=self.get_object(), max_steps=data.validated_data["max_steps"])
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


class RunGroupSerializer(serializers.ModelSerializer):
    runs = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = RunGroup
        fields = ["id", "name", "project", "status", "request", "min_pairs", "skipped", "error",
                  "runs", "created_by", "created_at"]  # fmt: skip
        read_only_fields = fields


class PrincipleRewardsSerializer(serializers.Serializer):
    """What ``POST /training-run-groups/`` takes: "reward per principle" on a project."""

    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.all())
    filters = serializers.DictField(
        required=False, default=dict,
        help_text="Snapshot filters every principle's snapshot is built with (the verdict "
        "source: annotators, annotator_kinds …; as for snapshots, without 'principle').",
    )  # fmt: skip
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS, default="raw")
    keys = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, allow_empty=False,
        help_text="Principle keys (default: every principle of the project's set).",
    )  # fmt: skip
    min_pairs = serializers.IntegerField(
        default=groups.MIN_PAIRS_DEFAULT, min_value=1, max_value=groups.MIN_PAIRS_MAX
    )
    config = serializers.DictField(required=False, default=dict)
    base_model = serializers.CharField(required=False, default="builtin:tiny")
    base_model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    queue = serializers.ChoiceField(choices=TrainingRun.Queue.choices, default="cpu")
    num_processes = serializers.IntegerField(default=1)
    name = serializers.CharField(required=False, default="", max_length=200)


class RunGroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Run groups (staff and viewers); staff launch "reward per principle"."""

    queryset = RunGroup.objects.prefetch_related("runs").order_by("-id")
    serializer_class = RunGroupSerializer
    ordering = ["-id"]
    default_roles = READERS
    action_roles = {"create": STAFF}

    @extend_schema(request=PrincipleRewardsSerializer, responses={201: RunGroupSerializer})
    def create(self, request):
        """Record the group (every input checked: 400 naming the field) and queue its
        preparation: a worker builds each principle's snapshot and launches the runs."""
        data = PrincipleRewardsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group = groups.launch_principle_rewards(**data.validated_data, created_by=request.user)
        return Response(RunGroupSerializer(group).data, status=201)


def register(router: BaseRouter) -> None:
    router.register("training-runs", TrainingRunViewSet, basename="trainingrun")
    router.register("training-run-groups", RunGroupViewSet, basename="rungroup")
    judges_api.register(router)
