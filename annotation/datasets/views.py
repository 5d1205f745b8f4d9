"""Data pages (admins and managers): imports, dataset snapshots, the tasks browser.

Thin: an upload goes through the same service as the API (``importers.jobs``). Small files are
imported in the request, larger ones by the ``annotation.run_import_job`` Celery task; either
way the browser lands on the job page, whose status card polls (htmx) while the job runs.
Snapshots likewise: ``snapshots.create_snapshot`` builds small ones in the request and queues
large ones; the snapshot page polls its status fragment while it builds. The tasks browser
reads through ``selectors`` and flags judgments through ``workspace.judging.flag_judgment``.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django_htmx.http import HttpResponseClientRefresh

from annotation.datasets import selectors, snapshots
from annotation.datasets.exports import reading
from annotation.datasets.forms import EVERY_PRINCIPLE, FlagForm, SnapshotForm, TaskFilterForm
from annotation.datasets.importers import jobs
from annotation.datasets.serializers import IMPORT_FORMATS
from annotation.models import AnnotatorProfile, DatasetSnapshot, ImportJob, Judgment, Project, Task
from annotation.roles import READING_ROLES, STAFF_ROLES, require_project_role
from annotation.workspace import judging
from common.errors import DomainError
from common.rendering import render_markdown

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


def _allowed(request: HttpRequest, project_id: int, roles: frozenset[str] = STAFF_ROLES) -> None:
    """Admins and managers (global or of the project) everywhere; viewer members where
    ``roles`` says (the read-only pages); a non-member gets a 404, anyone else a 403."""
    require_project_role(request.user, project_id, roles)


@login_required
def import_upload(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(
        Project.objects.select_related("principle_set"), slug=slug, is_active=True
    )
    _allowed(request, project.pk)
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
    job = get_object_or_404(ImportJob.objects.select_related("project"), pk=pk)
    _allowed(request, job.project_id)
    template = "annotation/import_status.html" if request.htmx else "annotation/import_job.html"
    return render(request, template, {"job": job, "running": job.status in RUNNING})


# ---------------------------------------------------------------- dataset snapshots

PER_PAGE = 50
#: the launch forms a snapshot kind opens with "Train on this dataset" (``training.validation``
#: checks the pairing; grpo takes any snapshot with prompts)
TRAIN_KINDS = {
    "preference": ("reward", "dpo", "kto", "orpo"),
    "ranking": ("reward", "dpo", "kto", "orpo"),
    "kto": ("kto",),
    "sft": ("sft",),
}


def _project(slug: str) -> Project:
    return get_object_or_404(Project.objects.select_related("principle_set"), slug=slug)


def _page(request: HttpRequest, items):
    return Paginator(items, PER_PAGE).get_page(request.GET.get("page"))


@login_required
def snapshot_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(slug)
    _allowed(request, project.pk, READING_ROLES)
    page = _page(request, selectors.project_snapshots(project))
    rows = [(s, selectors.filters_summary(s.filters)) for s in page]
    return render(
        request,
        "annotation/datasets/snapshot_list.html",
        {"project": project, "page": page, "rows": rows, "tab": "datasets"},
    )


@login_required
def snapshot_create(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(slug)
    _allowed(request, project.pk)
    form = SnapshotForm(project, request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        options = {
            "project": project,
            "fmt": data["format"],
            "aggregation": data["aggregation"],
            "filters": form.filters(),
            "name": data["name"],
            "created_by": request.user,
        }
        try:
            if data["principle"] == EVERY_PRINCIPLE:
                snapshots.create_principle_snapshots(**options)
                return redirect("snapshot-list", slug=project.slug)
            snapshot = snapshots.create_snapshot(kind=data["kind"], **options)
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("snapshot", pk=snapshot.pk)
    return render(
        request,
        "annotation/datasets/snapshot_create.html",
        {"project": project, "form": form, "tab": "datasets"},
    )


def _snapshot(pk: int) -> DatasetSnapshot:
    try:
        return selectors.snapshot_for_page(pk)
    except DatasetSnapshot.DoesNotExist as exc:
        raise Http404("no such snapshot") from exc


@login_required
def snapshot_detail(request: HttpRequest, pk: int) -> HttpResponse:
    snapshot = _snapshot(pk)
    _allowed(request, snapshot.project_id, READING_ROLES)
    ready = snapshot.status == DatasetSnapshot.Status.READY
    oracles = (
        selectors.oracles(snapshot.project)
        if ready and snapshot.kind != DatasetSnapshot.Kind.SFT
        else []
    )
    oracle = request.GET.get("oracle")
    return render(
        request,
        "annotation/datasets/snapshot_detail.html",
        {
            "snapshot": snapshot,
            "project": snapshot.project,
            "tab": "datasets",
            "filters_summary": selectors.filters_summary(snapshot.filters),
            "card": selectors.card(snapshot) if ready else None,
            "oracles": oracles,
            "oracle": selectors.oracle_figures(snapshot, oracle) if oracle in oracles else None,
            "preview": selectors.preview(snapshot) if ready else [],
            "train_kinds": TRAIN_KINDS.get(snapshot.kind, ("grpo",)) if ready else (),
        },
    )


@login_required
def snapshot_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The status fragment a building snapshot's page polls; once built, the page reloads."""
    snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
    _allowed(request, snapshot.project_id, READING_ROLES)
    if request.htmx and snapshot.status != DatasetSnapshot.Status.BUILDING:
        return HttpResponseClientRefresh()
    return render(request, "annotation/datasets/_snapshot_status.html", {"snapshot": snapshot})


@login_required
def snapshot_download(request: HttpRequest, pk: int) -> HttpResponse:
    """The snapshot's file as built (``?as=jsonl`` converts a Parquet one to JSON Lines)."""
    snapshot = get_object_or_404(DatasetSnapshot.objects.select_related("project"), pk=pk)
    _allowed(request, snapshot.project_id, READING_ROLES)
    if snapshot.status != DatasetSnapshot.Status.READY:
        return HttpResponse(f"snapshot is {snapshot.status}", status=409)
    path = snapshots.artifact_file(snapshot)
    if not path.is_file():
        raise Http404("the snapshot file is missing from ARTIFACT_ROOT")
    stem = f"{snapshot.project.slug}-{snapshot.kind}-{snapshot.pk}"
    if request.GET.get("as") == "jsonl" and snapshot.format == DatasetSnapshot.Format.PARQUET:
        response = StreamingHttpResponse(
            reading.jsonl_chunks(path, snapshot.format), content_type="application/x-ndjson"
        )
        response["Content-Disposition"] = f'attachment; filename="{stem}.jsonl"'
        return response
    response = FileResponse(path.open("rb"), as_attachment=True, filename=f"{stem}{path.suffix}")
    response["ETag"] = f'"{snapshot.sha256}"'
    response["X-Content-SHA256"] = snapshot.sha256
    return response


# ---------------------------------------------------------------- tasks browser


@login_required
def task_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(slug)
    _allowed(request, project.pk, READING_ROLES)
    form = TaskFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    tasks = selectors.staff_tasks(
        project,
        status=data.get("status") or "",
        flagged=data.get("flagged") or "",
        query=data.get("q") or "",
    )
    low, high = data.get("min_agreement"), data.get("max_agreement")
    if low is not None or high is not None:
        page = _page(request, selectors.task_ids_by_agreement(tasks, low, high))
        by_id = tasks.in_bulk(list(page))
        page_tasks = [by_id[task_id] for task_id in page if task_id in by_id]
    else:
        page = _page(request, tasks)
        page_tasks = list(page)
    agreements = selectors.agreements_of([task.pk for task in page_tasks])
    rows = [
        (task, selectors.prompt_text(task.prompt.messages), agreements.get(task.pk))
        for task in page_tasks
    ]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "annotation/datasets/task_list.html",
        {
            "project": project,
            "form": form,
            "page": page,
            "rows": rows,
            "query": query.urlencode(),
            "tab": "tasks",
        },
    )


@login_required
def task_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        task = selectors.task_for_page(pk)
    except Task.DoesNotExist as exc:
        raise Http404("no such task") from exc
    _allowed(request, task.project_id, READING_ROLES)
    responses = [(tr, render_markdown(tr.response.text)) for tr in task.task_responses.all()]
    labels = {tr.response_id: f"R{tr.position + 1}" for tr, _ in responses}
    judgments = [
        (
            judgment,
            " > ".join(
                " = ".join(labels.get(rid, f"#{rid}") for rid in bucket)
                for bucket in judgment.ordering
            ),
        )
        for judgment in task.judgments.all()
    ]
    orderings = [judgment.ordering for judgment in task.judgments.all()]
    return render(
        request,
        "annotation/datasets/task_detail.html",
        {
            "task": task,
            "project": task.project,
            "messages_html": [
                (m.get("role", ""), render_markdown(str(m.get("content", ""))))
                for m in (task.prompt.messages if isinstance(task.prompt.messages, list) else [])
                if isinstance(m, dict)
            ],
            "responses": responses,
            "labels": labels,
            "judgments": judgments,
            "agreement": selectors.top_choice_agreement(orderings),
            "tab": "tasks",
        },
    )


@login_required
def judgment_flag(request: HttpRequest, pk: int) -> HttpResponse:
    """Flag or unflag a judgment: GET asks for confirmation (and the reason), POST does it."""
    judgment = get_object_or_404(
        Judgment.objects.select_related("task__project__principle_set", "annotator"), pk=pk
    )
    _allowed(request, judgment.task.project_id)
    flagging = not judgment.flagged
    form = FlagForm(request.POST or None, initial={"flagged": "1" if flagging else "0"})
    if request.method == "POST" and form.is_valid():
        try:
            judging.flag_judgment(
                judgment=judgment,
                by=request.user,
                flagged=form.cleaned_data["flagged"],
                reason=form.cleaned_data["reason"],
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            state = "flagged" if judgment.flagged else "unflagged"
            messages.success(request, f"Judgment {judgment.pk} {state}.")
            return redirect("staff-task", pk=judgment.task_id)
    return render(
        request,
        "annotation/datasets/judgment_flag.html",
        {
            "judgment": judgment,
            "form": form,
            "flagging": flagging,
            "project": judgment.task.project,
        },
    )
