"""REST API (read-only for now): registered models and versions with their lineage. Registered
in ``config.api_urls``."""

from __future__ import annotations

import django_filters as df
from rest_framework import mixins, serializers
from rest_framework.routers import BaseRouter

from annotation.permissions import READERS
from common.api import ApiViewSet
from common.filters import FilterSet
from models_registry.models import ModelParent, ModelVersion, RegisteredModel


class RegisteredModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = RegisteredModel
        fields = ["id", "name", "kind", "description", "created_at"]
        read_only_fields = fields


class ParentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelParent
        fields = ["parent", "role"]
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="registered_model.name", read_only=True)
    kind = serializers.CharField(source="registered_model.kind", read_only=True)
    parents = ParentSerializer(source="parent_links", many=True, read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "registered_model", "name", "kind", "version", "stage", "artifact_uri",
                  "artifact_format", "sha256", "size_bytes", "parents", "dataset_snapshot",
                  "principle_set",
                  "annotator_contributions", "data_discretion_profile",
                  "model_discretion_profile", "eval_metrics", "model_card",
                  "created_at"]  # fmt: skip
        read_only_fields = fields


class ModelVersionFilter(FilterSet):
    kind = df.ChoiceFilter(
        field_name="registered_model__kind", choices=RegisteredModel._meta.get_field("kind").choices
    )

    class Meta:
        model = ModelVersion
        fields = ["registered_model", "stage", "dataset_snapshot", "principle_set", "kind"]


class RegisteredModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = RegisteredModel.objects.order_by("name")
    serializer_class = RegisteredModelSerializer
    filterset_fields = ["kind", "name"]
    default_roles = READERS


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Model versions with everything that fed them (staff and viewers, e.g. auditors)."""

    queryset = (
        ModelVersion.objects.select_related("registered_model")
        .prefetch_related("parent_links")
        .order_by("-id")
    )
    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter
    ordering_fields = ["id", "created_at", "version"]
    ordering = ["-id"]
    default_roles = READERS


def register(router: BaseRouter) -> None:
    router.register("registered-models", RegisteredModelViewSet, basename="registeredmodel")
    router.register("model-versions", ModelVersionViewSet, basename="modelversion")
