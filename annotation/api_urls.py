"""``/api/v1/``: the REST API router (annotation, plus read endpoints of training and the model
registry, whose viewsets live in their apps). Token: ``POST /api/v1/auth/token/``."""

from django.urls import include, path
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.routers import DefaultRouter

from annotation import api
from models_registry.api import ModelVersionViewSet, RegisteredModelViewSet
from training.api import TrainingRunViewSet


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token (``Authorization: Token <key>``)."""

    throttle_classes = [api.ApiAnonThrottle]


router = DefaultRouter()
router.register("principle-sets", api.PrincipleSetViewSet, basename="principleset")
router.register("principles", api.PrincipleViewSet, basename="principle")
router.register("projects", api.ProjectViewSet, basename="project")
router.register("prompts", api.PromptViewSet, basename="prompt")
router.register("responses", api.ResponseViewSet, basename="response")
router.register("tasks", api.TaskViewSet, basename="task")
router.register("assignments", api.AssignmentViewSet, basename="assignment")
router.register("judgments", api.JudgmentViewSet, basename="judgment")
router.register("demonstrations", api.DemonstrationViewSet, basename="demonstration")
router.register("snapshots", api.SnapshotViewSet, basename="snapshot")
router.register("import-jobs", api.ImportJobViewSet, basename="importjob")
router.register("webhooks", api.WebhookViewSet, basename="webhook")
router.register("training-runs", TrainingRunViewSet, basename="trainingrun")
router.register("registered-models", RegisteredModelViewSet, basename="registeredmodel")
router.register("model-versions", ModelVersionViewSet, basename="modelversion")

app_name = "api"
urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="token"),
    path("me/", api.MeView.as_view(), name="me"),
    path("", include(router.urls)),
]
