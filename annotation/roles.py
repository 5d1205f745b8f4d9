"""Who may do what: one place that maps a user to a role and the role to capabilities.

``role_of`` reads the role (the annotator profile: one query per request unless loaded). The
request paths that ask on every request (the workspace pages, the API's ``RolePermission``)
use ``remembered_role``: the same answer remembered per process for ``ROLE_CACHE_SECONDS``. A
change to a user or a profile clears this process's memo at once (``signals``) and reaches the
other processes within that time.

Per project (``project_role``): admins and global managers reach every project with their
global role; anyone else only the projects where they hold an active ``ProjectMembership``,
with that membership's role (manager, annotator or viewer), else ``None`` (a 404 everywhere).
The membership is remembered the same way (``remembered_membership``), so the workspace and
the API pay no query for it on a warm process.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from annotation.errors import NotAMemberError, ProjectRoleError
from annotation.models import AnnotatorProfile, ProjectMembership
from common.timed_cache import TimedCache

Role = AnnotatorProfile.Role
STAFF_ROLES = frozenset({Role.ADMIN, Role.MANAGER})
ANNOTATING_ROLES = frozenset({Role.ADMIN, Role.MANAGER, Role.ANNOTATOR})
# Read-only project pages (quality, datasets, the tasks browser): staff and viewers.
READING_ROLES = frozenset({Role.ADMIN, Role.MANAGER, Role.VIEWER})

ROLE_CACHE_SECONDS = 10.0
_ROLES: TimedCache[str] = TimedCache(ROLE_CACHE_SECONDS, limit=10_000)


def role_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The user's role, or None for anonymous users."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    profile = getattr(user, "profile", None)
    return profile.role if profile else Role.VIEWER


def remembered_role(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """``role_of``, remembered per process for ``ROLE_CACHE_SECONDS`` (see above)."""
    if not user.is_authenticated:
        return None
    # date_joined tells apart a deleted user and a new one that got the same id
    return _ROLES.get((user.pk, user.date_joined), lambda: role_of(user))


def forget_roles() -> None:
    """Drop this process's remembered roles and memberships (on every save or delete of a
    user, profile or membership)."""
    _ROLES.clear()
    _MEMBERSHIPS.clear()


@dataclass(frozen=True)
class Membership:
    """What the engine needs of an active membership: its role and caps (None: no cap)."""

    role: str
    max_judgments: int | None = None
    max_per_day: int | None = None

    @property
    def capped(self) -> bool:
        return self.max_judgments is not None or self.max_per_day is not None


_MEMBERSHIPS: TimedCache[Membership | None] = TimedCache(ROLE_CACHE_SECONDS, limit=50_000)


def membership_of(user: AbstractBaseUser, project_id: int) -> Membership | None:
    """The user's active membership of the project, or None (one query)."""
    row = (
        ProjectMembership.objects.filter(project_id=project_id, user_id=user.pk, is_active=True)
        .values_list("role", "max_judgments", "max_per_day")
        .first()
    )
    return Membership(*row) if row else None


def remembered_membership(
    user: AbstractBaseUser | AnonymousUser, project_id: int
) -> Membership | None:
    """``membership_of``, remembered per process for ``ROLE_CACHE_SECONDS`` (see above)."""
    if not user.is_authenticated:
        return None
    key = (user.pk, user.date_joined, project_id)
    return _MEMBERSHIPS.get(key, lambda: membership_of(user, project_id))


def project_role(user: AbstractBaseUser | AnonymousUser, project_id: int) -> str | None:
    """The user's role in the project: the global one for admins and managers, else the
    active membership's; None for non-members (by the remembered role and membership)."""
    role = remembered_role(user)
    if role is None or role in STAFF_ROLES:
        return role
    membership = remembered_membership(user, project_id)
    return membership.role if membership else None


def require_project_role(
    user: AbstractBaseUser | AnonymousUser, project_id: int, allowed: frozenset[str]
) -> str:
    """The user's role in the project for a page: a non-member gets a 404 (the project does
    not exist for them), a member whose role is not ``allowed`` a 403."""
    role = project_role(user, project_id)
    if role is None:
        raise Http404("no such project")
    if role not in allowed:
        raise PermissionDenied("your role in this project does not allow this")
    return role


def require_annotator(user: AbstractBaseUser, project_id: int) -> Membership | None:
    """For the engine (lease, submit, demonstrate): the user annotates in this project, else
    ``NotAMemberError`` (404) or ``ProjectRoleError`` (403). Returns the membership, whose caps
    apply, or None for admins and global managers (no caps). No query on a warm process."""
    role = project_role(user, project_id)
    if role is None:
        raise NotAMemberError(
            "you are not (or no longer) a member of this project; nothing was saved"
        )
    if role not in ANNOTATING_ROLES:
        raise ProjectRoleError("your role in this project does not annotate")
    return None if role in STAFF_ROLES else remembered_membership(user, project_id)


def reachable_projects(
    user: AbstractBaseUser | AnonymousUser, roles: frozenset[str] = frozenset(Role)
) -> QuerySet | None:
    """The ids of the projects where the user holds an active membership with one of
    ``roles`` (a subquery for ``project__in``), or None when the user reaches every project
    (admins and global managers)."""
    if remembered_role(user) in STAFF_ROLES:
        return None
    return ProjectMembership.objects.filter(user_id=user.pk, is_active=True, role__in=roles).values(
        "project_id"
    )


def is_staff_role(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins and managers run projects; they see sources, analytics and other people's work."""
    return role_of(user) in STAFF_ROLES
