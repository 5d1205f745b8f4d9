"""The annotation app's REST endpoints, registered on the one ``/api/v1/`` router
(``config.api_urls``). Each concern keeps its viewsets in its own ``api`` module; the project
resource is assembled here, since its actions belong to the concerns above ``projects``."""

from __future__ import annotations

from rest_framework.routers import BaseRouter

from annotation.datasets import api as dataset_api
from annotation.principles import api as principle_api
from annotation.projects import api as project_api
from annotation.webhooks import api as webhook_api
from annotation.workspace import api as workspace_api


class ProjectViewSet(
    workspace_api.ProjectWorkActions,
    dataset_api.ProjectDataActions,
    project_api.ProjectViewSet,
):
    """Projects: CRUD, plus next-task (annotators) and bulk prompts, upload, export (staff)."""


def register(router: BaseRouter) -> None:
    router.register("principle-sets", principle_api.PrincipleSetViewSet, basename="principleset")
    router.register("principles", principle_api.PrincipleViewSet, basename="principle")
    router.register("projects", ProjectViewSet, basename="project")
    router.register("prompts", project_api.PromptViewSet, basename="prompt")
    router.register("responses", project_api.ResponseViewSet, basename="response")
    router.register("tasks", project_api.TaskViewSet, basename="task")
    router.register("assignments", workspace_api.AssignmentViewSet, basename="assignment")
    router.register("judgments", workspace_api.JudgmentViewSet, basename="judgment")
    router.register("demonstrations", workspace_api.DemonstrationViewSet, basename="demonstration")
    router.register("snapshots", dataset_api.SnapshotViewSet, basename="snapshot")
    router.register("import-jobs", dataset_api.ImportJobViewSet, basename="importjob")
    router.register("webhooks", webhook_api.WebhookViewSet, basename="webhook")
