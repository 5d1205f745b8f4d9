"""The members page of a project (admins, global managers, the project's managers) and the
invitation page anyone signed in may open with a link.

Thin: forms check what was typed, ``members`` writes, ``selectors`` read. An invitation's link
is shown once, on the page that answers its creation (only the token's hash is stored).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.models import Project, ProjectInvitation, ProjectMembership
from annotation.projects import members, selectors
from annotation.projects.forms import InvitationForm, MemberAddForm, MemberCapsForm
from annotation.roles import STAFF_ROLES, require_project_role
from common.errors import DomainError

# Where a new member lands: annotators in the workspace, the others on the project's page.
LANDING = {
    ProjectMembership.Role.ANNOTATOR: "workspace",
    ProjectMembership.Role.MANAGER: "project-settings",
    ProjectMembership.Role.VIEWER: "quality:project",
}


def _managed(request: HttpRequest, slug: str) -> Project:
    project = get_object_or_404(Project, slug=slug)
    require_project_role(request.user, project.pk, STAFF_ROLES)
    return project


def _membership(project: Project, pk: int) -> ProjectMembership:
    return get_object_or_404(
        ProjectMembership.objects.select_related("user"), pk=pk, project=project
    )


def _page(request: HttpRequest, project: Project, **forms) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    context = {
        "project": project,
        "query": query,
        "page": selectors.project_members(
            project=project, query=query, page=request.GET.get("page")
        ),
        "invitations": selectors.live_invitations(project),
        "add_form": forms.get("add_form") or MemberAddForm(),
        "invite_form": forms.get("invite_form") or InvitationForm(),
        "invitation_link": forms.get("invitation_link", ""),
        "roles": ProjectMembership.Role.choices,
    }
    status = 422 if any(f.errors for f in (context["add_form"], context["invite_form"])) else 200
    return render(request, "annotation/project_members.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, slug: str) -> HttpResponse:
    """GET lists members (``?q=`` search, 50 a page); POST adds one ("Add member") or creates
    an invitation link ("Create invitation link", shown once on the answer)."""
    project = _managed(request, slug)
    if request.method == "GET":
        return _page(request, project)
    if "invite_role" in request.POST:
        form = InvitationForm(request.POST)
        if form.is_valid():
            _, token = members.create_invitation(
                project=project,
                role=form.cleaned_data["invite_role"],
                expires_days=form.cleaned_data["expires_days"],
                created_by=request.user,
            )
            link = request.build_absolute_uri(reverse("invitation", args=[token]))
            messages.success(request, "Invitation link created: copy it now, it is shown once.")
            return _page(request, project, invitation_link=link)
        return _page(request, project, invite_form=form)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            user = selectors.find_user(data["who"])
            members.add_member(
                project=project,
                user=user,
                role=data["role"],
                max_judgments=data["max_judgments"],
                max_per_day=data["max_per_day"],
                added_by=request.user,
            )
        except DomainError as exc:
            form.add_error("who", str(exc))
        else:
            messages.success(request, f"{user.get_username()} added as {data['role']}.")
            return redirect("project-members", slug=project.slug)
    return _page(request, project, add_form=form)


@login_required
@require_POST
def member_update(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Save a member's role and caps."""
    project = _managed(request, slug)
    membership = _membership(project, pk)
    form = MemberCapsForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"{membership.user.get_username()}: {error}")
        return redirect("project-members", slug=project.slug)
    members.update_member(membership=membership, **form.cleaned_data)
    messages.success(request, f"{membership.user.get_username()} saved.")
    return redirect("project-members", slug=project.slug)


@login_required
@require_http_methods(["GET", "POST"])
def member_deactivate(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST deactivates (live leases go back to the pool)."""
    project = _managed(request, slug)
    membership = _membership(project, pk)
    if request.method == "POST":
        members.set_member_active(membership=membership, active=False)
        messages.success(request, f"{membership.user.get_username()} deactivated.")
        return redirect("project-members", slug=project.slug)
    return render(
        request,
        "annotation/project_members_confirm.html",
        {"project": project, "membership": membership},
    )


@login_required
@require_POST
def member_reactivate(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = _managed(request, slug)
    membership = _membership(project, pk)
    members.set_member_active(membership=membership, active=True)
    messages.success(request, f"{membership.user.get_username()} reactivated.")
    return redirect("project-members", slug=project.slug)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = _managed(request, slug)
    invitation = get_object_or_404(ProjectInvitation, pk=pk, project=project)
    members.revoke_invitation(invitation=invitation)
    messages.success(request, "Invitation revoked.")
    return redirect("project-members", slug=project.slug)


@login_required
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows the project and role of a usable invitation; POST ("Join project") makes the
    signed-in user a member and opens the project. Unknown token: 404; expired, revoked or
    used up: 410."""
    try:
        invite = members.usable_invitation(token)
        if request.method == "POST":
            membership = members.accept_invitation(token=token, user=request.user)
            messages.success(request, f"You joined {invite.project.name}.")
            return redirect(LANDING[membership.role], slug=invite.project.slug)
    except DomainError as exc:
        status = getattr(exc, "http_status", 409)
        return render(request, "annotation/invitation.html", {"error": str(exc)}, status=status)
    return render(request, "annotation/invitation.html", {"invitation": invite})
