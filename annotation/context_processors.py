"""Template context: the current user's role, for role-aware navigation."""

from django.http import HttpRequest

from annotation.roles import is_staff_role, role_of


def role(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None:
        return {"user_role": None, "is_staff_role": False}
    return {"user_role": role_of(user), "is_staff_role": is_staff_role(user)}
