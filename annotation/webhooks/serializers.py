"""Serializers for webhooks and deliveries."""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import (
    Webhook,
    WebhookDelivery,
)
from annotation.webhooks import services
from common.outbound import RefusedURLError


class WebhookSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Webhook.Event.choices), allow_empty=False,
        max_length=3,
    )  # fmt: skip
    secret = serializers.CharField(
        write_only=True, required=False, min_length=16, max_length=200,
        help_text="HMAC key; generated when omitted and returned once, on creation.",
    )  # fmt: skip
    url = serializers.URLField(max_length=500)

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "events", "project", "is_active", "secret", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_url(self, value: str) -> str:
        try:
            services.check_url(value)
        except RefusedURLError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook", "event", "event_id", "payload", "status", "attempts",
                  "response_status", "last_error", "created_at", "delivered_at"]  # fmt: skip
        read_only_fields = fields
