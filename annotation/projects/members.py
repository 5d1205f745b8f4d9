"""Project membership: add a member (by username or e-mail), change role and caps,
deactivate (their live leases go back to the pool) or reactivate, and invitation links.

An invitation's token is shown once, in the link; only its SHA-256 is stored, so the table
never holds a usable link. Every write here saves the membership row (no bulk ``update``):
its signal drops the remembered memberships (``roles.remembered_membership``).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.errors import InvitationGoneError, NotAMemberError
from annotation.models import Assignment, Project, ProjectInvitation, ProjectMembership
from common.errors import DomainError

User = get_user_model()

MAX_INVITATION_DAYS = 90


def _caps(max_judgments: int | None, max_per_day: int | None) -> None:
    for name, value in (("max judgments", max_judgments), ("max per day", max_per_day)):
        if value is not None and value < 0:
            raise DomainError(f"{name} must be 0 or more (empty: no cap)")


@transaction.atomic
def add_member(
    *,
    project: Project,
    user: User,
    role: str = ProjectMembership.Role.ANNOTATOR,
    max_judgments: int | None = None,
    max_per_day: int | None = None,
    added_by: User | None = None,
) -> ProjectMembership:
    """Make ``user`` a member of ``project``; a deactivated member is reactivated with the new
    role and caps, an active one is refused (change it instead)."""
    _caps(max_judgments, max_per_day)
    if role not in ProjectMembership.Role.values:
        raise DomainError(f"unknown role {role!r}")
    membership = (
        ProjectMembership.objects.select_for_update().filter(project=project, user=user).first()
    )
    if membership is not None and membership.is_active:
        raise DomainError(f"{user.get_username()} is already a member of {project.name}")
    if membership is None:
        membership = ProjectMembership(project=project, user=user, added_by=added_by)
    membership.role = role
    membership.max_judgments = max_judgments
    membership.max_per_day = max_per_day
    membership.is_active = True
    membership.deactivated_at = None
    membership.full_clean(validate_unique=False)
    membership.save()
    return membership


@transaction.atomic
def update_member(*, membership: ProjectMembership, **changes: object) -> ProjectMembership:
    """Change a membership's ``role``, ``max_judgments`` or ``max_per_day``."""
    unknown = set(changes) - {"role", "max_judgments", "max_per_day"}
    if unknown:
        raise DomainError(f"cannot change {', '.join(sorted(unknown))} of a membership")
    merged = {
        "max_judgments": membership.max_judgments,
        "max_per_day": membership.max_per_day,
        **changes,
    }
    _caps(merged["max_judgments"], merged["max_per_day"])
    for name, value in changes.items():
        setattr(membership, name, value)
    membership.full_clean(validate_unique=False)
    membership.save(update_fields=list(changes))
    return membership


@transaction.atomic
def set_member_active(*, membership: ProjectMembership, active: bool) -> ProjectMembership:
    """Deactivate (``active=False``) or reactivate a member. Deactivating releases the
    member's live leases in the project in the same transaction (expired now: the tasks go
    back to the pool); their judgments stay."""
    now = timezone.now()
    membership.is_active = active
    membership.deactivated_at = None if active else now
    membership.save(update_fields=["is_active", "deactivated_at"])
    if not active:
        Assignment.objects.filter(
            annotator_id=membership.user_id,
            task__project_id=membership.project_id,
            state=Assignment.State.LEASED,
        ).update(state=Assignment.State.EXPIRED, leased_until=now)
    return membership


def ensure_member(
    *, project: Project, user: User, role: str, added_by: User | None = None
) -> ProjectMembership:
    """The user's membership of the project, created with ``role`` if there is none (an
    existing one is left as it is: idempotent seeding, a project's creator)."""
    membership, _ = ProjectMembership.objects.get_or_create(
        project=project, user=user, defaults={"role": role, "added_by": added_by}
    )
    return membership


# ---- invitation links


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invitation(
    *,
    project: Project,
    role: str = ProjectMembership.Role.ANNOTATOR,
    expires_days: int = 7,
    max_uses: int = 1,
    created_by: User | None = None,
) -> tuple[ProjectInvitation, str]:
    """A new invitation and its token (shown once: only its hash is stored)."""
    if role not in ProjectMembership.Role.values:
        raise DomainError(f"unknown role {role!r}")
    if not 1 <= expires_days <= MAX_INVITATION_DAYS:
        raise DomainError(f"an invitation expires in 1 to {MAX_INVITATION_DAYS} days")
    if max_uses < 1:
        raise DomainError("an invitation is good for at least one use")
    token = secrets.token_urlsafe(32)
    invitation = ProjectInvitation.objects.create(
        project=project,
        role=role,
        token_hash=token_hash(token),
        expires_at=timezone.now() + timedelta(days=expires_days),
        max_uses=max_uses,
        created_by=created_by,
    )
    return invitation, token


def revoke_invitation(*, invitation: ProjectInvitation) -> ProjectInvitation:
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


def usable_invitation(token: str, *, lock: bool = False) -> ProjectInvitation:
    """The invitation of ``token``; ``NotAMemberError`` (404) for an unknown token,
    ``InvitationGoneError`` (410) for an expired, revoked or used-up one."""
    invitations = ProjectInvitation.objects.select_related("project")
    if lock:
        invitations = invitations.select_for_update(of=("self",))
    invitation = invitations.filter(token_hash=token_hash(token or "")).first()
    if invitation is None:
        raise NotAMemberError("no such invitation")
    if invitation.revoked_at is not None:
        raise InvitationGoneError("this invitation was revoked")
    if invitation.expires_at <= timezone.now():
        raise InvitationGoneError("this invitation has expired")
    if invitation.uses >= invitation.max_uses:
        raise InvitationGoneError("this invitation was already used")
    if not invitation.project.is_active:
        raise InvitationGoneError("this project is archived")
    return invitation


@transaction.atomic
def accept_invitation(*, token: str, user: User) -> ProjectMembership:
    """Make ``user`` a member with the invitation's role and count one use. An active member
    keeps their membership (no use counted); a deactivated one is refused."""
    invitation = usable_invitation(token, lock=True)
    membership = ProjectMembership.objects.filter(project=invitation.project, user=user).first()
    if membership is not None:
        if not membership.is_active:
            raise DomainError("your membership of this project was deactivated; ask its manager")
        return membership
    membership = ProjectMembership.objects.create(
        project=invitation.project, user=user, role=invitation.role, added_by=invitation.created_by
    )
    ProjectInvitation.objects.filter(pk=invitation.pk).update(uses=F("uses") + 1)
    return membership
