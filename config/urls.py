"""URL map: web pages, the REST API (with offline OpenAPI docs), the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/registry/", include("models_registry.registry_api", namespace="registry-api")),
    path("api/v1/", include("config.api_urls", namespace="api")),
    path("training/", include("training.urls")),
    path("registry/", include("models_registry.urls")),
    path("quality/", include("annotation.quality.urls")),
    path("", include("annotation.urls")),
]
