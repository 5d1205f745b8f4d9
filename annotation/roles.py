"""Who may do what: one place that maps a user to a role and the role to capabilities.

``role_of`` reads the role (the annotator profile: one query per request unless loaded). The
request paths that ask on every request (the workspace pages, the API's ``RolePermission``)
use ``remembered_role``: the same answer remembered per process for ``ROLE_CACHE_SECONDS``. A
change to a user or a profile clears this process's memo at once (``signals``) and reaches the
other processes within that time.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from annotation.models import AnnotatorProfile
from common.timed_cache import TimedCache

Role = AnnotatorProfile.Role
STAFF_ROLES = frozenset({Role.ADMIN, Role.MANAGER})
ANNOTATING_ROLES = frozenset({Role.ADMIN, Role.MANAGER, Role.ANNOTATOR})

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
    """Drop this process's remembered roles (on every save or delete of a user or profile)."""
    _ROLES.clear()


def is_staff_role(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins and managers run projects; they see sources, analytics and other people's work."""
    return role_of(user) in STAFF_ROLES


def can_annotate(user: AbstractBaseUser | AnonymousUser) -> bool:
    return role_of(user) in ANNOTATING_ROLES


def may_annotate(user: AbstractBaseUser | AnonymousUser) -> bool:
    """``can_annotate`` by the remembered role (the workspace asks on every request)."""
    return remembered_role(user) in ANNOTATING_ROLES
