from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("", views.run_list, name="runs"),
    path("launch/<str:kind>/", views.launch, name="launch"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("principle-rewards/", views.principle_rewards, name="principle-rewards"),
    path("groups/<int:pk>/", views.group_detail, name="group"),
]
