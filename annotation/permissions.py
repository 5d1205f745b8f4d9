"""REST API authorization: role sets per viewset action (``annotation.roles``), plus the
object-level rule that annotators only ever reach their own assignments, judgments and
demonstrations (enforced by the viewsets' querysets: someone else's is a 404), and that
anyone but admins and managers reaches only the rows of projects where they hold an active
membership (``MemberRows``: anything else is absent from lists and a 404). Every API request
asks, so the role is the per-process remembered one (``roles.remembered_role``), as in the
workspace pages."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from annotation.roles import (
    ANNOTATING_ROLES,
    STAFF_ROLES,
    Role,
    reachable_projects,
    remembered_role,
)

ADMIN = frozenset({Role.ADMIN})
STAFF = STAFF_ROLES
ANNOTATING = ANNOTATING_ROLES
# Non-sensitive reads (principles, projects): everyone signed in.
EVERYONE = frozenset({Role.ADMIN, Role.MANAGER, Role.ANNOTATOR, Role.VIEWER})
# Data, datasets and lineage: staff and read-only viewers (auditors); not annotators, who see
# tasks only through their own assignments (blind to other people's work and to sources).
READERS = frozenset({Role.ADMIN, Role.MANAGER, Role.VIEWER})


class RolePermission(BasePermission):
    """Allows a request when the user's role is in the view's roles for the current action.

    A view declares ``action_roles = {"list": READERS, ...}``; actions it does not name fall
    back to ``default_roles`` (staff only). Unauthenticated requests are refused (401).
    """

    message = "your role does not allow this"

    def has_permission(self, request, view) -> bool:
        role = remembered_role(request.user)
        if role is None:
            return False
        return role in roles_for(view)


def roles_for(view) -> frozenset:
    action = getattr(view, "action", None) or request_method_action(view)
    mapping = getattr(view, "action_roles", {})
    if action in mapping:
        return mapping[action]
    return getattr(view, "default_roles", STAFF)


def request_method_action(view) -> str:
    method = getattr(getattr(view, "request", None), "method", "GET") or "GET"
    return "read" if method in {"GET", "HEAD", "OPTIONS"} else "write"


def is_staff(user) -> bool:
    return remembered_role(user) in STAFF


class MemberRows:
    """A viewset mixin: admins and global managers see every row; anyone else only the rows
    of projects where they hold an active membership with one of ``member_roles``, reached
    through ``project_lookup`` (``"project"``, ``"task__project"``, ``"pk"`` for projects)."""

    project_lookup = "project"
    member_roles: frozenset = EVERYONE

    def get_queryset(self):
        queryset = super().get_queryset()
        reachable = reachable_projects(self.request.user, self.member_roles)
        if reachable is not None:
            queryset = queryset.filter(**{f"{self.project_lookup}__in": reachable})
        return queryset
