"""Read paths for the annotation domain."""

from django.db.models import QuerySet

from .models import Project


def active_projects() -> QuerySet[Project]:
    return Project.objects.filter(is_active=True).select_related("principle_set")
