"""Reads about projects: an annotator's queue, the staff home's list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Least
from django.utils import timezone

from annotation.models import (
    Demonstration,
    Judgment,
    Project,
    Task,
)


@dataclass(frozen=True)
class QueueEntry:
    project: Project
    tasks: int
    needed: int
    done: int
    mine_total: int
    mine_today: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.needed) if self.needed else 100


def annotator_queue(*, annotator: AbstractBaseUser) -> list[QueueEntry]:
    """Per active project: judgments done / needed (overlap × tasks, gold excluded), and the
    annotator's own judgments and demonstrations, in total and today."""
    projects = list(Project.objects.filter(is_active=True).select_related("principle_set"))
    ids = [p.pk for p in projects]
    progress = {
        row["project"]: row
        for row in Task.objects.filter(project__in=ids, is_gold=False)
        .values("project")
        .annotate(
            tasks=Count("id"),
            done=Sum(Least("submitted_count", F("project__annotations_per_task"))),
        )
    }
    today = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    mine: dict[int, list[int]] = {}
    for model in (Judgment, Demonstration):
        for row in (
            model.objects.filter(annotator=annotator, task__project__in=ids)
            .values("task__project")
            .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=today)))
        ):
            entry = mine.setdefault(row["task__project"], [0, 0])
            entry[0] += row["total"]
            entry[1] += row["today"]
    out = []
    for project in projects:
        row = progress.get(project.pk, {"tasks": 0, "done": 0})
        total, today_count = mine.get(project.pk, [0, 0])
        out.append(
            QueueEntry(
                project=project,
                tasks=row["tasks"],
                needed=row["tasks"] * project.annotations_per_task,
                done=row["done"] or 0,
                mine_total=total,
                mine_today=today_count,
            )
        )
    return out


STAFF_PAGE_SIZE = 50


def staff_projects(*, query: str = "", page: str | int | None = None) -> Page:
    """The staff home's page of projects (active first, then by name), with their cached
    counts and principle set: two queries whatever the number of tasks or judgments."""
    projects = Project.objects.select_related("principle_set").order_by("-is_active", "name")
    if query:
        projects = projects.filter(Q(name__icontains=query) | Q(slug__icontains=query))
    return Paginator(projects, STAFF_PAGE_SIZE).get_page(page)
