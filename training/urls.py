from django.urls import path

from training import views
from training.judges import views as judges

app_name = "training"
urlpatterns = [
    path("", views.run_list, name="runs"),
    path("launch/<str:kind>/", views.launch, name="launch"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("runs/<int:pk>/resume/", views.resume, name="resume"),
    path("principle-rewards/", views.principle_rewards, name="principle-rewards"),
    path("groups/<int:pk>/", views.group_detail, name="group"),
    path("judges/", judges.jobs, name="judges"),
    path("judges/<int:pk>/revisions/", judges.revisions, name="judge_revisions"),
    path("judges/<int:pk>/<str:verb>/", judges.act, name="judge_act"),
]
