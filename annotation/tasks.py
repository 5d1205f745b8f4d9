"""Celery entry points for the annotation domain (thin: they call services)."""

from celery import shared_task

from . import services


@shared_task(name="annotation.refresh_project_counts")
def refresh_project_counts(project_id: int) -> dict:
    project = services.refresh_project_counts(project_id=project_id)
    return {"tasks": project.task_count, "judgments": project.judgment_count}
