"""The REST API's base: viewset, error handling, pagination, throttles."""

from __future__ import annotations

from array import array

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, serializers, status, viewsets
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


class CompactHistory:
    """DRF's sliding-window throttle with the window's request times kept as an ``array('d')``:
    one buffer to unpickle and pickle per request instead of a float object per request in
    the window (at thousands of requests a minute, most of the throttle's cost)."""

    def throttle_success(self):
        if not isinstance(self.history, array):
            self.history = array("d", self.history)
        return super().throttle_success()


class ApiUserThrottle(CompactHistory, UserRateThrottle):
    """Per-user rate limit (``THROTTLE_USER`` in production; generous in development)."""

    def get_rate(self):
        return _rate("user", "20000/min")


class ApiAnonThrottle(CompactHistory, AnonRateThrottle):
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


class FieldsBuiltOnce:
    """A ``Serializer`` mixin for the input of hot endpoints: its fields are copied and bound
    once per class and process instead of on every instantiation (DRF deep-copies every
    declared field each time: most of a small input's validation cost). Only for flat input
    serializers whose fields keep no state between calls and need no context: no nested
    serializers, no ``partial``, no context-dependent defaults or validators."""

    @property
    def fields(self):
        cls = type(self)
        built = cls.__dict__.get("_fields_built_once")
        if built is None:
            template = cls.__new__(cls)
            serializers.Serializer.__init__(template)  # no data, no context
            built = serializers.Serializer.fields.func(template)  # DRF's: copied, bound
            cls._fields_built_once = built
        return built


def validated(serializer_class, data, **context):
    """The serializer's validated data (a 400 with the field errors otherwise)."""
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
