"""Users, projects and their denormalized counts."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotation.models import (
    AnnotatorProfile,
    Judgment,
    PrincipleSet,
    Project,
    ProjectMembership,
    Task,
)
from annotation.projects import members
from annotation.roles import role_of
from common.errors import DomainError

User = get_user_model()


@transaction.atomic
def create_user(
    *,
    username: str,
    password: str | None,
    role: str = AnnotatorProfile.Role.ANNOTATOR,
    kind: str = AnnotatorProfile.Kind.HUMAN,
    model_ref: str = "",
    email: str = "",
) -> User:
    """A user with its profile. ``password=None`` makes an account that cannot log in."""
    user = User(username=username, email=email, is_staff=role == AnnotatorProfile.Role.ADMIN)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    user.profile, _ = AnnotatorProfile.objects.update_or_create(
        user=user, defaults={"role": role, "kind": kind, "model_ref": model_ref}
    )  # refresh the cached profile: the post_save signal cached a default one
    return user


def get_or_create_model_annotator(*, name: str, model_ref: str = "") -> User:
    """The user that stands for an algorithmic annotator (reward model, LLM judge, policy)."""
    user = User.objects.filter(username=name).select_related("profile").first()
    if user is None:
        return create_user(
            username=name,
            password=None,
            role=AnnotatorProfile.Role.VIEWER,
            kind=AnnotatorProfile.Kind.MODEL,
            model_ref=model_ref or f"external:{name}",
        )
    return user


@transaction.atomic
def create_project(
    *,
    name: str,
    slug: str,
    principle_set: PrincipleSet,
    created_by: User | None = None,
    **settings: object,
) -> Project:
    """A project over a published principle set; ``settings`` are Project fields. A creator
    who is not an admin becomes the project's manager member."""
    if not principle_set.is_published:
        raise DomainError("a project must use a published principle set")
    project = Project(
        name=name,
        slug=slug,
        principle_set=principle_set,
        created_by=created_by,
        counts_refreshed_at=timezone.now(),  # nothing to count yet: the zeros are true
        **settings,
    )
    project.full_clean()
    project.save()
    if created_by is not None and role_of(created_by) != AnnotatorProfile.Role.ADMIN:
        members.ensure_member(
            project=project,
            user=created_by,
            role=ProjectMembership.Role.MANAGER,
            added_by=created_by,
        )
    return project


@transaction.atomic
def update_project(*, project: Project, **changes: object) -> Project:
    """Change a project's settings; its slug and principle-set version are fixed at creation."""
    fixed = {"slug", "principle_set"} & set(changes)
    if fixed:
        raise DomainError(f"cannot change {', '.join(sorted(fixed))} of a project")
    for name, value in changes.items():
        setattr(project, name, value)
    project.full_clean()
    project.save(update_fields=list(changes))
    return project


IMPORTED = Q(origin__startswith="import:")


def recount_project(*, project_id: int) -> bool:
    """Recount a project's cached counts: tasks, complete tasks, and judgments by source
    (imported, else by a model annotator, else human). Three aggregate queries and an UPDATE;
    False when there is no such project (any more)."""
    counts = Task.objects.filter(project_id=project_id).aggregate(
        tasks=Count("id"),
        complete=Count(
            "id",
            filter=Q(
                submitted_count__gte=Project.objects.filter(pk=project_id).values(
                    "annotations_per_task"
                )[:1]
            ),
        ),
    )
    judgments = Judgment.objects.filter(task__project_id=project_id)
    split = judgments.aggregate(total=Count("id"), imported=Count("id", filter=IMPORTED))
    by_models = (
        judgments.exclude(IMPORTED)
        .filter(annotator__profile__kind=AnnotatorProfile.Kind.MODEL)
        .count()
    )
    return bool(
        Project.objects.filter(pk=project_id).update(
            task_count=counts["tasks"],
            completed_task_count=counts["complete"],
            judgment_count=split["total"],
            imported_judgment_count=split["imported"],
            model_judgment_count=by_models,
            human_judgment_count=split["total"] - split["imported"] - by_models,
            counts_refreshed_at=timezone.now(),
        )
    )


def refresh_project_counts(*, project_id: int) -> Project:
    """``recount_project``, then the project as recounted (run by a Celery worker)."""
    recount_project(project_id=project_id)
    return Project.objects.get(pk=project_id)


# Bulk writes recount at once (after their commit); single judgments are recounted by the
# debounced metrics refresh (``annotation.refresh_metrics``), off the annotators' path.
RECOUNT_EVENTS = ("tasks.created", "judgments.imported")


def recount_after_import(event: str, payload: dict) -> None:
    """Event-bus handler: recount the project that a bulk write has just changed."""
    recount_project(project_id=payload["project_id"])


def set_project_active(*, project: Project, active: bool) -> Project:
    """Archive (``active=False``: no leases, submissions refused) or reactivate a project."""
    return update_project(project=project, is_active=active)
