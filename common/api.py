"""The REST API's base: viewset, error handling, pagination, throttles."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response as ApiResponse
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from common.auth import CachedTokenAuthentication
from common.errors import DomainError


def _rate(scope: str, default: str) -> str:
    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES") or {}
    return rates.get(scope) or default


class ApiUserThrottle(UserRateThrottle):
    """Per-user rate limit (``THROTTLE_USER`` in production; generous in development)."""

    def get_rate(self):
        return _rate("user", "20000/min")


class ApiAnonThrottle(AnonRateThrottle):
    def get_rate(self):
        return _rate("anon", "600/min")


class ApiPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def domain_error_response(error: DomainError) -> ApiResponse:
    """A domain error as ``{"detail": message}`` (plus what the error adds, e.g. ``line``)."""
    return ApiResponse(
        error.body(), status=getattr(error, "http_status", status.HTTP_400_BAD_REQUEST)
    )


class ApiMixin:
    """Token (``common.auth``: served from the shared cache) then session auth (anonymous →
    401), throttles, pagination, domain errors as 4xx. Authorization is
    ``REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]`` (the roles of ``annotation.permissions``: a
    view names them per action in ``action_roles``, the others in ``default_roles``, staff when
    unnamed)."""

    authentication_classes = [CachedTokenAuthentication, SessionAuthentication]
    throttle_classes = [ApiAnonThrottle, ApiUserThrottle]
    pagination_class = ApiPagination

    def handle_exception(self, exc):
        if isinstance(exc, DomainError):
            return domain_error_response(exc)
        if isinstance(exc, DjangoValidationError):
            exc = exceptions.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
            )
        elif isinstance(exc, ObjectDoesNotExist):
            exc = exceptions.NotFound(str(exc) or "not found")
        return super().handle_exception(exc)


class ApiViewSet(ApiMixin, viewsets.GenericViewSet):
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    ordering_fields = ["id"]
    ordering = ["id"]


def validated(serializer_class, data, **context):
    """The serializer's validated data (a 400 with the field errors otherwise)."""
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
