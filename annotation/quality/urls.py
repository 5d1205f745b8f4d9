"""Quality & discretion pages, mounted at ``/quality/`` (namespace ``quality``)."""

from django.urls import path

from annotation.quality import views as views

app_name = "quality"

urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:slug>/", views.project_quality, name="project"),
    path("<slug:slug>/discretion/", views.discretion, name="discretion"),
    path("<slug:slug>/annotators/<str:username>/", views.annotator_detail, name="annotator"),
    path("<slug:slug>/refresh/", views.refresh, name="refresh"),
]
