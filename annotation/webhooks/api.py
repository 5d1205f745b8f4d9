"""REST endpoints for webhooks and their deliveries."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response as ApiResponse

from annotation.filters import (
    WebhookDeliveryFilter,
    WebhookFilter,
)
from annotation.models import (
    Webhook,
)
from annotation.permissions import (
    ADMIN,
)
from annotation.webhooks import serializers as webhook_serializers
from annotation.webhooks import services
from common.api import ApiViewSet, validated


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    """HMAC-signed event subscriptions (admins only)."""

    queryset = Webhook.objects.order_by("id")
    serializer_class = webhook_serializers.WebhookSerializer
    filterset_class = WebhookFilter
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    default_roles = ADMIN

    @extend_schema(responses={201: webhook_serializers.WebhookCreatedSerializer})
    def create(self, request):
        data = validated(webhook_serializers.WebhookSerializer, request.data)
        hook = services.create_webhook(created_by=request.user, **data)
        return ApiResponse(
            webhook_serializers.WebhookCreatedSerializer(hook).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=["pending", "delivered", "failed"]),
            OpenApiParameter("event", str, enum=list(Webhook.Event.values)),
        ],
        responses=webhook_serializers.WebhookDeliverySerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request, pk=None):
        """Recent deliveries of this webhook, newest first."""
        hook = self.get_object()
        filterset = WebhookDeliveryFilter(
            request.query_params, queryset=hook.deliveries.order_by("-id")
        )
        if not filterset.is_valid():
            raise serializers.ValidationError(filterset.errors)
        page = self.paginate_queryset(filterset.qs)
        return self.get_paginated_response(
            webhook_serializers.WebhookDeliverySerializer(page, many=True).data
        )
