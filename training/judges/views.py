"""The judges staff page: jobs with progress, tokens and cost; a launch form; cancel, resume."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.roles import is_staff_role
from common.errors import DomainError
from common.rendering import render_markdown
from training.judges import selectors, services, templates
from training.judges.forms import JudgeLaunchForm
from training.models import JudgeJob


def _staff(request: HttpRequest) -> None:
    if not is_staff_role(request.user):
        raise PermissionDenied("judges are for admins and managers")


@login_required
def jobs(request: HttpRequest) -> HttpResponse:
    _staff(request)
    templates.ensure_defaults()
    form = JudgeLaunchForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = services.launch_job(
                project=data["project"],
                backend=data["backend"],
                config=form.config(),
                template=data["template"],
                model_version=data["model_version"],
                snapshot=data["snapshot"],
                annotator=data["annotator"],
                principle=data["principle"],
                created_by=request.user,
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Judge job {job.pk} queued.")
            return redirect("training:judges")
    context = {"jobs": selectors.jobs()[:200], "form": form}
    status = 400 if request.method == "POST" else 200
    return render(request, "training/judges.html", context, status=status)


@login_required
def revisions(request: HttpRequest, pk: int) -> HttpResponse:
    """A critique job's critiques and revisions (model output, rendered as untrusted text)."""
    _staff(request)
    job = get_object_or_404(selectors.jobs(), pk=pk)
    rows = [
        {
            "row": r,
            "critique": render_markdown(r.critique),
            "revision": render_markdown(r.revision),
        }
        for r in selectors.revisions(job)[:500]
    ]
    return render(request, "training/judge_revisions.html", {"job": job, "rows": rows})


@login_required
@require_POST
def act(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """``cancel`` or ``resume`` a job, then back to the list."""
    _staff(request)
    job = get_object_or_404(JudgeJob, pk=pk)
    try:
        (services.request_cancel if verb == "cancel" else services.resume)(job)
    except DomainError as exc:
        messages.error(request, str(exc))
    return redirect("training:judges")
