"""``/api/v1/``: the one REST API router. Each app registers its own viewsets
(``<app>.api.register``). Token: ``POST /api/v1/auth/token/``."""

from axes.helpers import get_cool_off, get_lockout_message
from django.contrib.auth import get_user_model
from django.urls import include, path
from rest_framework import serializers
from rest_framework.authtoken import serializers as authtoken
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.routers import DefaultRouter

import annotation.api
import models_registry.api
import training.api
from annotation.projects.api import MeView
from common.api import ApiAnonThrottle
from common.limits import DepthLimitedJSONParser


class AuthTokenSerializer(authtoken.AuthTokenSerializer):
    """A username and password in, an API token out (a username longer than any user's is
    refused before it is checked)."""

    username = serializers.CharField(
        label="Username",
        write_only=True,
        max_length=get_user_model()._meta.get_field("username").max_length,
    )


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (``Authorization: Token <key>``).

    Throttled as anonymous whatever the request carries (it is never authenticated). Repeated
    failed passwords lock the username out (django-axes, through ``authenticate(request=...)``):
    429 with ``Retry-After`` until the cool-off ends."""

    authentication_classes = []
    throttle_classes = [ApiAnonThrottle]
    parser_classes = [FormParser, MultiPartParser, DepthLimitedJSONParser]  # JSON_MAX_DEPTH
    serializer_class = AuthTokenSerializer

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            if not getattr(request, "axes_locked_out", False):  # set by django-axes
                raise
            cool_off = get_cool_off(request)
            raise Throttled(
                wait=cool_off.total_seconds() if cool_off else None,
                detail=str(get_lockout_message()),
            ) from None


router = DefaultRouter()
annotation.api.register(router)
training.api.register(router)
models_registry.api.register(router)

app_name = "api"
urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="token"),
    path("me/", MeView.as_view(), name="me"),
    path("", include(router.urls)),
]
