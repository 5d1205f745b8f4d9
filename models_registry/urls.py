"""Registry pages, mounted at ``/registry/`` (namespace ``registry``)."""

from django.urls import path

from models_registry import views

app_name = "registry"
urlpatterns = [
    path("", views.index, name="index"),
    path("versions/<int:pk>/", views.version_detail, name="version"),
    path("versions/<int:pk>/card/", views.model_card, name="card"),
    path("versions/<int:pk>/artifact/", views.artifact, name="artifact"),
    path("versions/<int:pk>/stage/", views.set_stage, name="stage"),
    path("versions/<int:pk>/profile/", views.profile, name="profile"),
    path("compare/", views.compare, name="compare"),
    path("generate/", views.generate, name="generate"),
    path("generation/<int:pk>/", views.job_detail, name="job"),
    path("arena/<slug:slug>/", views.leaderboard, name="leaderboard"),
]
