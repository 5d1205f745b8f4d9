"""REST endpoints for projects, prompts, responses and tasks."""

from __future__ import annotations

from django.db.models import Prefetch
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import (
    extend_schema,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
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
    ProjectMembership,
    Prompt,
    Response,
    Task,
    TaskResponse,
)
from annotation.permissions import (
    EVERYONE,
    READERS,
    MemberRows,
    is_staff,
)
from annotation.projects import members as membership
from annotation.projects import selectors, services
from annotation.projects import serializers as project_serializers
from annotation.roles import STAFF_ROLES, require_project_role, role_of
from common.api import ApiMixin, ApiViewSet, validated


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
    MemberRows,
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
    # next-task: the service decides by the role in the project (``roles.require_annotator``)
    # members / invitations: staff and the project's managers (decided per project)
    action_roles = {
        "list": EVERYONE, "retrieve": EVERYONE, "next_task": EVERYONE, "export": READERS,
        "member_list": EVERYONE, "member_update": EVERYONE, "invitation_create": EVERYONE,
    }  # fmt: skip
    project_lookup = "pk"

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

    def _managed_project(self, pk: str) -> Project:
        """The project, for its staff and managers (a non-member gets a 404, others a 403)."""
        project = self.get_object()
        require_project_role(self.request.user, project.pk, STAFF_ROLES)
        return project

    @extend_schema(methods=["GET"], responses=project_serializers.MembershipSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request=project_serializers.MemberCreateSerializer,
        responses={201: project_serializers.MembershipSerializer},
    )
    @action(detail=True, methods=["get", "post"], url_path="members")
    def member_list(self, request, pk=None):
        """The project's members (paginated), or add one by username or e-mail."""
        project = self._managed_project(pk)
        if request.method == "GET":
            members = (
                ProjectMembership.objects.filter(project=project)
                .select_related("user")
                .order_by("id")
            )
            page = self.paginate_queryset(members)
            body = project_serializers.MembershipSerializer(page, many=True).data
            return self.get_paginated_response(body)
        data = dict(validated(project_serializers.MemberCreateSerializer, request.data))
        created = membership.add_member(
            project=project,
            user=selectors.find_user(data.pop("who")),
            added_by=request.user,
            **data,
        )
        return ApiResponse(
            project_serializers.MembershipSerializer(created).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        request=project_serializers.MemberUpdateSerializer,
        responses=project_serializers.MembershipSerializer,
    )
    @action(detail=True, methods=["patch"], url_path=r"members/(?P<member_pk>[0-9]+)")
    def member_update(self, request, pk=None, member_pk=None):
        """Change a member's role or caps; ``is_active`` deactivates or reactivates."""
        project = self._managed_project(pk)
        found = (
            ProjectMembership.objects.select_related("user")
            .filter(project=project, pk=member_pk)
            .first()
        )
        if found is None:
            raise Http404("no such member")
        data = dict(validated(project_serializers.MemberUpdateSerializer, request.data))
        active = data.pop("is_active", None)
        if data:
            membership.update_member(membership=found, **data)
        if active is not None and active != found.is_active:
            membership.set_member_active(membership=found, active=active)
        return ApiResponse(project_serializers.MembershipSerializer(found).data)

    @extend_schema(
        request=project_serializers.InvitationCreateSerializer,
        responses={201: project_serializers.InvitationSerializer},
    )
    @action(detail=True, methods=["post"], url_path="invitations")
    def invitation_create(self, request, pk=None):
        """An invitation link (its ``link`` is in this answer only)."""
        project = self._managed_project(pk)
        data = validated(project_serializers.InvitationCreateSerializer, request.data)
        invitation, token = membership.create_invitation(
            project=project, created_by=request.user, **data
        )
        link = request.build_absolute_uri(reverse("invitation", args=[token]))
        body = project_serializers.InvitationSerializer(invitation, context={"link": link}).data
        return ApiResponse(body, status=status.HTTP_201_CREATED)


class PromptViewSet(MemberRows, mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = Prompt.objects.prefetch_related("responses").order_by("id")
    serializer_class = project_serializers.PromptSerializer
    filterset_class = PromptFilter
    default_roles = member_roles = READERS

    def get_serializer_class(self):
        return (
            project_serializers.StaffPromptSerializer
            if is_staff(self.request.user)
            else project_serializers.PromptSerializer
        )


class ResponseViewSet(MemberRows, mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = Response.objects.order_by("id")
    serializer_class = project_serializers.ResponseSerializer
    filterset_class = ResponseFilter
    default_roles = member_roles = READERS
    project_lookup = "prompt__project"

    def get_serializer_class(self):
        return (
            project_serializers.StaffResponseSerializer
            if is_staff(self.request.user)
            else project_serializers.ResponseSerializer
        )


class TaskViewSet(MemberRows, mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
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
    default_roles = member_roles = READERS

    def get_serializer_class(self):
        return (
            project_serializers.StaffTaskSerializer
            if is_staff(self.request.user)
            else project_serializers.TaskSerializer
        )
