from django.urls import path

from annotation import import_views, views

urlpatterns = [
    path("", views.home, name="home"),
    # ---- annotator workspace
    path("projects/<slug:slug>/work/", views.work, name="workspace"),
    path("projects/<slug:slug>/guidelines/", views.guidelines, name="workspace-guidelines"),
    path("projects/<slug:slug>/history/", views.history, name="workspace-history"),
    path("assignments/<int:pk>/submit/", views.submit, name="workspace-submit"),
    path("assignments/<int:pk>/demonstrate/", views.demonstrate, name="workspace-demonstrate"),
    path("assignments/<int:pk>/skip/", views.skip, name="workspace-skip"),
    path("judgments/<int:pk>/", views.judgment_detail, name="workspace-judgment"),
    # ---- imports (admins and managers)
    path("projects/<slug:slug>/import/", import_views.import_upload, name="import-upload"),
    path("imports/<int:pk>/", import_views.import_job, name="import-job"),
]
