"""REST API (read-only for now): training runs and their metric series. Write paths arrive with
the training issue; registered in ``annotation.api_urls``."""

from __future__ import annotations

import django_filters as df
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from annotation.api import ApiViewSet
from annotation.permissions import READERS

from .models import RunMetric, TrainingRun


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


class TrainingRunFilter(df.FilterSet):
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

    @extend_schema(responses=RunMetricSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def metrics(self, request, pk=None):
        """Every logged scalar of the run, by name then step (optionally ``?name=loss``)."""
        run = self.get_object()
        metrics = RunMetric.objects.filter(run=run).order_by("name", "step")
        if request.query_params.get("name"):
            metrics = metrics.filter(name=request.query_params["name"])
        return Response(RunMetricSerializer(metrics[:100_000], many=True).data)
