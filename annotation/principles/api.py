"""REST endpoints for principle sets and principles."""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response as ApiResponse

from annotation.filters import (
    PrincipleFilter,
    PrincipleSetFilter,
)
from annotation.models import (
    Principle,
    PrincipleSet,
)
from annotation.permissions import (
    EVERYONE,
    STAFF,
)
from annotation.principles import selectors, serializers, services
from annotation.specs import PrincipleSpec
from common.api import ApiViewSet, validated
from common.errors import DomainError


@extend_schema_view(
    list=extend_schema(summary="Principle sets (every version)"),
    retrieve=extend_schema(responses=serializers.PrincipleSetDetailSerializer),
)
class PrincipleSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = PrincipleSet.objects.annotate(principle_count=Count("principles")).order_by(
        "name", "-version"
    )
    serializer_class = serializers.PrincipleSetSerializer
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
            return serializers.PrincipleSetDetailSerializer
        return super().get_serializer_class()

    @extend_schema(
        request=serializers.PrincipleSetCreateSerializer,
        responses={201: serializers.PrincipleSetDetailSerializer},
    )
    def create(self, request):
        data = validated(serializers.PrincipleSetCreateSerializer, request.data)
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
        return serializers.PrincipleSetDetailSerializer(fresh).data

    @extend_schema(request=None, responses=serializers.PrincipleSetDetailSerializer)
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Freeze a draft version (published versions are immutable)."""
        principle_set = services.publish_principle_set(principle_set=self.get_object())
        return ApiResponse(self._detail(principle_set))

    @extend_schema(request=None, responses={201: serializers.PrincipleSetDetailSerializer})
    @action(detail=True, methods=["post"])
    def fork(self, request, pk=None):
        """A new draft version whose parent is this one (principle keys are kept)."""
        fork = services.fork_principle_set(principle_set=self.get_object(), created_by=request.user)
        return ApiResponse(self._detail(fork), status=status.HTTP_201_CREATED)

    @extend_schema(responses=serializers.PrincipleSetSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def versions(self, request, pk=None):
        """Every version with this set's name, newest first."""
        principle_set = self.get_object()
        versions = self.queryset.filter(name=principle_set.name).order_by("-version")
        return ApiResponse(serializers.PrincipleSetSerializer(versions, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("against", int, required=False,
                                     description="Other version's id (default: the parent).")],
        responses=serializers.PrincipleSetDiffSerializer,
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

    @extend_schema(
        request=serializers.PrincipleWriteSerializer,
        responses={201: serializers.PrincipleSerializer},
    )
    @action(detail=True, methods=["post"], url_path="principles")
    def add_principle(self, request, pk=None):
        """Add a principle to a draft version."""
        data = validated(serializers.PrincipleWriteSerializer, request.data)
        principle = services.add_principle(
            principle_set=self.get_object(), spec=PrincipleSpec(**data)
        )
        return ApiResponse(
            serializers.PrincipleSerializer(principle).data, status=status.HTTP_201_CREATED
        )


class PrincipleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    queryset = Principle.objects.all().order_by("principle_set", "position")
    serializer_class = serializers.PrincipleSerializer
    filterset_class = PrincipleFilter
    http_method_names = ["get", "patch", "delete", "head", "options"]
    action_roles = {"list": EVERYONE, "retrieve": EVERYONE}

    @extend_schema(
        request=serializers.PrincipleUpdateSerializer, responses=serializers.PrincipleSerializer
    )
    def partial_update(self, request, pk=None):
        """Edit a principle of a draft set (published sets refuse every edit)."""
        data = validated(serializers.PrincipleUpdateSerializer, request.data)
        principle = services.update_principle(principle=self.get_object(), **data)
        return ApiResponse(serializers.PrincipleSerializer(principle).data)

    def destroy(self, request, pk=None):
        services.remove_principle(principle=self.get_object())
        return ApiResponse(status=status.HTTP_204_NO_CONTENT)
