"""Reads about projects: an annotator's queue, the staff home's list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from annotation.models import (
    Demonstration,
    Judgment,
    Project,
    ProjectInvitation,
    ProjectMembership,
    Task,
)
from annotation.roles import reachable_projects
from common.errors import DomainError

User = get_user_model()


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
    """Per active project the annotator works on (every one for admins and managers):
    judgments done / needed (overlap × tasks, gold excluded), and the annotator's own
    judgments and demonstrations, in total and today."""
    projects = Project.objects.filter(is_active=True).select_related("principle_set")
    reachable = reachable_projects(annotator, frozenset({ProjectMembership.Role.ANNOTATOR}))
    if reachable is not None:
        projects = projects.filter(pk__in=reachable)
    projects = list(projects)
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


def staff_projects(
    *, query: str = "", page: str | int | None = None, user: AbstractBaseUser | None = None
) -> Page:
    """The staff home's page of projects (active first, then by name), with their cached
    counts and principle set: two queries whatever the number of tasks or judgments. With
    ``user``, only the projects that user manages or views (all for admins and managers),
    each with ``my_role``."""
    projects = Project.objects.select_related("principle_set").order_by("-is_active", "name")
    if user is not None:
        reachable = reachable_projects(
            user, frozenset({ProjectMembership.Role.MANAGER, ProjectMembership.Role.VIEWER})
        )
        if reachable is not None:
            role = reachable.filter(project_id=OuterRef("pk")).values("role")[:1]
            projects = projects.filter(pk__in=reachable).annotate(my_role=Subquery(role))
    if query:
        projects = projects.filter(Q(name__icontains=query) | Q(slug__icontains=query))
    return Paginator(projects, STAFF_PAGE_SIZE).get_page(page)


# ---- members and invitations

MEMBERS_PAGE_SIZE = 50


def find_user(who: str) -> User:
    """The user named by ``who``: a username, else an e-mail address (case-insensitive)."""
    who = (who or "").strip()
    if not who:
        raise DomainError("give a username or an e-mail address")
    user = User.objects.filter(username=who).first()
    if user is not None:
        return user
    if "@" in who:
        matches = list(User.objects.filter(email__iexact=who)[:2])
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise DomainError(f"several users have the e-mail {who}; give a username")
    raise DomainError(f"no user with the username or e-mail {who!r}")


def project_members(*, project: Project, query: str = "", page: str | int | None = None) -> Page:
    """The members page: memberships (active first, then by username) with each member's
    judgment count in the project; ``query`` matches username or e-mail."""
    judgments = (
        Judgment.objects.filter(task__project=project, annotator=OuterRef("user_id"))
        .order_by()
        .values("annotator")
        .annotate(n=Count("id"))
        .values("n")
    )
    members = (
        ProjectMembership.objects.filter(project=project)
        .select_related("user")
        .annotate(judgments=Coalesce(Subquery(judgments), 0))
        .order_by("-is_active", "user__username")
    )
    if query:
        members = members.filter(
            Q(user__username__icontains=query) | Q(user__email__icontains=query)
        )
    return Paginator(members, MEMBERS_PAGE_SIZE).get_page(page)


def live_invitations(project: Project) -> QuerySet[ProjectInvitation]:
    """The project's invitations that can still be used, newest first."""
    return ProjectInvitation.objects.filter(
        project=project,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
        uses__lt=F("max_uses"),
    )


def judgments_counted(*, user: AbstractBaseUser, project_id: int) -> tuple[int, int]:
    """The user's judgments in the project: in all, and since local midnight (one query)."""
    today = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    row = Judgment.objects.filter(annotator_id=user.pk, task__project_id=project_id).aggregate(
        total=Count("id"), today=Count("id", filter=Q(created_at__gte=today))
    )
    return row["total"], row["today"]
