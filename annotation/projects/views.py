"""Project pages for admins and managers: create, edit settings, archive and reactivate
(settings and archiving also for the project's own managers).

Thin: the forms check what a person typed, ``services`` write. A "Preview" button renders the
guidelines through the same sanitizer as the workspace (``common.rendering``) and saves
nothing. Archiving is ``is_active=False``, which the workspace and the API already refuse.
"""

from __future__ import annotations

import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import SafeString
from django.views.decorators.http import require_http_methods

from annotation.models import Project
from annotation.projects import services
from annotation.projects.forms import ProjectCreateForm, ProjectSettingsForm
from annotation.roles import STAFF_ROLES, is_staff_role, require_project_role
from common.errors import DomainError
from common.rendering import render_markdown


def _staff(request: HttpRequest) -> None:
    if not is_staff_role(request.user):
        raise PermissionDenied("projects are run by admins and managers")


def _project(request: HttpRequest, slug: str) -> Project:
    """The project for its staff pages: admins, global managers and the project's managers
    (a non-member gets a 404)."""
    project = get_object_or_404(Project.objects.select_related("principle_set"), slug=slug)
    require_project_role(request.user, project.pk, STAFF_ROLES)
    return project


def _preview(request: HttpRequest) -> SafeString | None:
    """The posted guidelines rendered, when the "Preview" button was pressed."""
    if request.method == "POST" and "preview" in request.POST:
        return render_markdown(request.POST.get("guidelines", ""))
    return None


def _saved(form: ModelForm, write) -> Project | None:
    """``write()``'s project, or None with the service's refusal shown on the form."""
    try:
        return write()
    except DomainError as exc:
        form.add_error(None, str(exc))
    except ValidationError as exc:
        form.add_error(None, exc.messages)
    return None


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    _staff(request)
    form = ProjectCreateForm(request.POST or None)
    preview = _preview(request)
    if request.method == "POST" and preview is None and form.is_valid():
        project = _saved(
            form, lambda: services.create_project(created_by=request.user, **form.cleaned_data)
        )
        if project is not None:
            messages.success(request, f"Project {project.name} created.")
            return redirect("project-settings", slug=project.slug)
    return render(
        request,
        "annotation/projects/form.html",
        {"form": form, "preview": preview, "project": None},
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    # the form validates a copy: a refused change leaves the page's header as saved
    form = ProjectSettingsForm(request.POST or None, instance=copy.copy(project))
    preview = _preview(request)
    if request.method == "POST" and preview is None and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if not changes or _saved(
            form, lambda: services.update_project(project=form.instance, **changes)
        ):
            messages.success(request, "Settings saved." if changes else "Nothing changed.")
            return redirect("project-settings", slug=project.slug)
    return render(
        request,
        "annotation/projects/form.html",
        {"form": form, "preview": preview, "project": project},
    )


def _set_active(request: HttpRequest, slug: str, active: bool) -> HttpResponse:
    """GET asks for confirmation; POST (CSRF-checked) archives or reactivates."""
    project = _project(request, slug)
    if request.method == "POST":
        services.set_project_active(project=project, active=active)
        messages.success(
            request, f"Project {project.name} {'reactivated' if active else 'archived'}."
        )
        return redirect("project-settings", slug=project.slug)
    return render(
        request, "annotation/projects/confirm.html", {"project": project, "activate": active}
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_archive(request: HttpRequest, slug: str) -> HttpResponse:
    return _set_active(request, slug, active=False)


@login_required
@require_http_methods(["GET", "POST"])
def project_reactivate(request: HttpRequest, slug: str) -> HttpResponse:
    return _set_active(request, slug, active=True)
