"""REST endpoints for projects, prompts, responses and tasks."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import (
    extend_schema,
)
from rest_framework import mixins
from rest_framework.response import Response as ApiResponse
from rest_framework.views import APIView

from annotation.filters import (
    ProjectFilter,
    PromptFilter,
    ResponseFilter,
    TaskFilter,
)
from annotation.models import (
    Project,
    Prompt,
    Response,
    Task,
    TaskResponse,
)
from annotation.permissions import (
    ANNOTATING,
    EVERYONE,
    READERS,
    is_staff,
)
from annotation.projects import serializers as project_serializers
from annotation.projects import services
from annotation.roles import role_of
from common.api import ApiMixin, ApiViewSet


class MeView(ApiMixin, APIView):
    """The signed-in user and their role."""

    default_roles = EVERYONE

    @extend_schema(responses=project_serializers.MeSerializer)
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


class ProjectViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ApiViewSet,
):
    queryset = Project.objects.select_related("principle_set").order_by("name")
    serializer_class = project_serializers.ProjectSerializer
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
            return project_serializers.ProjectUpdateSerializer
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


class PromptViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = Prompt.objects.prefetch_related("responses").order_by("id")
    serializer_class = project_serializers.PromptSerializer
    filterset_class = PromptFilter
    default_roles = READERS

    def get_serializer_class(self):
        return (
            project_serializers.StaffPromptSerializer
            if is_staff(self.request.user)
            else project_serializers.PromptSerializer
        )


class ResponseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = Response.objects.order_by("id")
    serializer_class = project_serializers.ResponseSerializer
    filterset_class = ResponseFilter
    default_roles = READERS

    def get_serializer_class(self):
        return (
            project_serializers.StaffResponseSerializer
            if is_staff(self.request.user)
            else project_serializers.ResponseSerializer
        )


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
    serializer_class = project_serializers.TaskSerializer
    filterset_class = TaskFilter
    default_roles = READERS

    def get_serializer_class(self):
        return (
            project_serializers.StaffTaskSerializer
            if is_staff(self.request.user)
            else project_serializers.TaskSerializer
        )
