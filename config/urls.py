"""URL map: web pages, the REST API (with offline OpenAPI docs), the admin."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import BasePermission


class DocsAccess(BasePermission):
    """The schema and its docs: anyone where ``API_DOCS_PUBLIC`` (development's default),
    else signed-in users only (production)."""

    def has_permission(self, request, view) -> bool:
        return settings.API_DOCS_PUBLIC or bool(request.user and request.user.is_authenticated)


docs_access = {"permission_classes": [DocsAccess]}
urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(**docs_access), name="api-schema"),
    # The split view serves its start-up script as a file (no inline script: CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", **docs_access),
        name="api-docs",
    ),
    path("api/v1/registry/", include("models_registry.registry_api", namespace="registry-api")),
    path("api/v1/", include("config.api_urls", namespace="api")),
    # MLflow's model-registry REST paths, for the real MLflow client (models_registry.mlflow_api)
    path("api/2.0/mlflow/", include("models_registry.mlflow_api", namespace="mlflow-api")),
    path("training/", include("training.urls")),
    path("registry/", include("models_registry.urls")),
    path("quality/", include("annotation.quality.urls")),
    path("", include("annotation.urls")),
]
