"""Import pages (admins and managers): upload a file, then watch its job until it is done.

Thin: the upload goes through the same service as the API (``importers.jobs``). Small files are
imported in the request, larger ones by the ``annotation.run_import_job`` Celery task; either
way the browser lands on the job page, whose status card polls (htmx) while the job runs.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from annotation.datasets.importers import jobs
from annotation.datasets.serializers import IMPORT_FORMATS
from annotation.models import AnnotatorProfile, ImportJob, Project
from annotation.roles import is_staff_role
from common.errors import DomainError

RUNNING = {ImportJob.Status.QUEUED, ImportJob.Status.RUNNING}


class ImportForm(forms.Form):
    """The fields of the API's upload endpoint (``ImportUploadSerializer``)."""

    file = forms.FileField()
    format = forms.ChoiceField(choices=IMPORT_FORMATS, initial="prompts")
    file_format = forms.ChoiceField(
        choices=[("", "detect from the file name"), *((f, f) for f in jobs.PROMPT_FORMATS)],
        required=False,
        help_text="Container format; detected from the extension when left empty.",
    )
    annotator = forms.CharField(
        max_length=140, required=False, help_text="Preference formats: who made the judgments."
    )
    annotator_kind = forms.ChoiceField(
        choices=AnnotatorProfile.Kind.choices, initial=AnnotatorProfile.Kind.HUMAN, required=False
    )
    model_ref = forms.CharField(
        max_length=300, required=False, help_text="Model annotators: name@version."
    )
    ls_keys = forms.CharField(
        max_length=400, required=False, label="Label Studio keys", help_text="prompt,left,right"
    )

    def options(self) -> dict:
        data = self.cleaned_data
        return {key: data[key] for key in jobs.OPTION_KEYS if data.get(key) not in (None, "")}


def _staff(request: HttpRequest) -> None:
    if not is_staff_role(request.user):
        raise PermissionDenied("imports are for admins and managers")


@login_required
def import_upload(request: HttpRequest, slug: str) -> HttpResponse:
    _staff(request)
    project = get_object_or_404(
        Project.objects.select_related("principle_set"), slug=slug, is_active=True
    )
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = jobs.create_import_job(
                project=project,
                upload=upload,
                fmt=form.cleaned_data["format"],
                options=form.options(),
                created_by=request.user,
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            jobs.start_import_job(job, size=upload.size)
            return redirect("import-job", pk=job.pk)
    recent = ImportJob.objects.filter(project=project).order_by("-id")[:10]
    return render(
        request,
        "annotation/import_upload.html",
        {"project": project, "form": form, "recent": recent},
    )


@login_required
def import_job(request: HttpRequest, pk: int) -> HttpResponse:
    _staff(request)
    job = get_object_or_404(ImportJob.objects.select_related("project"), pk=pk)
    template = "annotation/import_status.html" if request.htmx else "annotation/import_job.html"
    return render(request, template, {"job": job, "running": job.status in RUNNING})
