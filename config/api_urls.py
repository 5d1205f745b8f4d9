"""``/api/v1/``: the one REST API router. Each app registers its own viewsets
(``<app>.api.register``). Token: ``POST /api/v1/auth/token/``."""

from django.urls import include, path
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.routers import DefaultRouter

import annotation.api
import models_registry.api
import training.api
from annotation.projects.api import MeView
from common.api import ApiAnonThrottle
from common.limits import DepthLimitedJSONParser


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (``Authorization: Token <key>``)."""

    throttle_classes = [ApiAnonThrottle]
    parser_classes = [FormParser, MultiPartParser, DepthLimitedJSONParser]  # JSON_MAX_DEPTH


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
