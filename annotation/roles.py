"""Who may do what: one place that maps a user to a role and the role to capabilities."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from annotation.models import AnnotatorProfile

Role = AnnotatorProfile.Role
STAFF_ROLES = frozenset({Role.ADMIN, Role.MANAGER})


def role_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The user's role, or None for anonymous users."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    profile = getattr(user, "profile", None)
    return profile.role if profile else Role.VIEWER


def is_staff_role(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Admins and managers run projects; they see sources, analytics and other people's work."""
    return role_of(user) in STAFF_ROLES


def can_annotate(user: AbstractBaseUser | AnonymousUser) -> bool:
    return role_of(user) in {Role.ADMIN, Role.MANAGER, Role.ANNOTATOR}
