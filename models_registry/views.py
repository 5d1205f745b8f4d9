"""Registry pages (admins and managers): models and versions, "what fed this model" (lineage),
model cards, side-by-side comparison, stage changes, artifact download, the closed loop's
generation jobs and the arena leaderboard. Thin: the same services and selectors as the API."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Project
from annotation.roles import is_staff_role
from common.errors import DomainError
from common.query_limits import time_limit
from common.rendering import render_markdown
from models_registry import selectors, services
from models_registry.cards import render_model_card
from models_registry.forms import GenerateForm, ProfileForm, StageForm
from models_registry.models import GenerationJob, ModelVersion, RegisteredModel
from models_registry.registry_api import artifact_response


def staff_required(view):
    """Logged-in admins and managers only (anonymous → login, others → 403)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_staff_role(request.user):
            raise PermissionDenied("the registry is for admins and managers")
        return view(request, *args, **kwargs)

    return wrapper


def _version(pk: int) -> ModelVersion:
    return get_object_or_404(selectors.versions(), pk=pk)


@staff_required
def index(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("filter", "").strip()
    error = None
    try:
        with time_limit():
            found = list(selectors.search_versions(query)[:500])
    except DomainError as exc:  # a bad filter, or one that ran past the time limit
        error, found = str(exc), []
    return render(
        request,
        "registry/index.html",
        {
            "versions": found,
            "filter": query,
            "error": error,
            "models": RegisteredModel.objects.order_by("name"),
            "jobs": GenerationJob.objects.select_related("project")[:10],
            "projects": Project.objects.order_by("name"),
        },
    )


@staff_required
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """What fed this model, on one page."""
    version = _version(pk)
    record = selectors.lineage(version)
    return render(
        request,
        "registry/version.html",
        {
            "version": version,
            "record": record,
            "stage_form": StageForm(initial={"stage": version.stage}),
            "profile_form": ProfileForm(),
            "others": selectors.versions().exclude(pk=pk).order_by("-id")[:200],
            "downloadable": services.artifact_location(version.artifact_uri) is not None,
        },
    )


@staff_required
def model_card(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(pk)
    card = render_model_card(version)
    if request.GET.get("download"):
        response = HttpResponse(card, content_type="text/markdown; charset=utf-8")
        name = f"{version.registered_model.name}-v{version.version}-model-card.md"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    return render(
        request, "registry/card.html", {"version": version, "card": render_markdown(card)}
    )


@staff_required
def artifact(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(pk)
    location = services.artifact_location(version.artifact_uri)
    if location is None:
        raise Http404("this version's artifact is not stored here")
    fmt = request.GET.get("format", "stored")
    try:
        return artifact_response(version, location, fmt)
    except DomainError as exc:  # a stored artifact that cannot be read as committed: not here;
        if fmt == "stored":  # a format this version cannot take (merged full weights): a 400
            raise Http404(str(exc)) from exc
        return HttpResponseBadRequest(str(exc))


@staff_required
@require_POST
def set_stage(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(pk)
    form = StageForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        services.set_stage(
            version,
            data["stage"],
            request.user,
            data["note"],
            archive_existing=data["archive_existing"],
        )
        messages.success(request, f"{selectors.label(version)} is now {data['stage']}.")
    else:
        messages.error(request, "Choose a valid stage.")
    return redirect("registry:version", pk=pk)


@staff_required
@require_POST
def profile(request: HttpRequest, pk: int) -> HttpResponse:
    version = _version(pk)
    form = ProfileForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.request_profile(
                version=version,
                probe_project=data["probe_project"],
                method=data["method"],
                reward_version=data["reward_model"],
            )
        except DomainError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Profiling queued; reload in a moment.")
    else:
        messages.error(request, "Invalid profiling options.")
    return redirect("registry:version", pk=pk)


@staff_required
def compare(request: HttpRequest) -> HttpResponse:
    try:
        a, b = int(request.GET["a"]), int(request.GET["b"])
    except (KeyError, ValueError, OverflowError) as exc:
        raise Http404("choose two versions") from exc
    va, vb = _version(a), _version(b)
    return render(
        request,
        "registry/compare.html",
        {"a": va, "b": vb, "result": selectors.compare(va, vb)},
    )


@staff_required
def generate(request: HttpRequest) -> HttpResponse:
    form = GenerateForm(request.POST or None, initial=request.GET or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = services.request_generation(
                project=data["project"],
                versions=list(data["models"]),
                samples_per_model=data["samples_per_model"],
                max_prompts=data["max_prompts"],
                max_new_tokens=data["max_new_tokens"],
                temperature=data["temperature"],
                top_p=data["top_p"],
                seed=data["seed"],
                engine=data["engine"],
                queue=data["queue"],
                created_by=request.user,
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Generation job {job.pk} queued on {job.queue}.")
            return redirect("registry:job", pk=job.pk)
    return render(request, "registry/generate.html", {"form": form})


@staff_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob.objects.select_related("project"), pk=pk)
    template = "registry/_job_status.html" if request.htmx else "registry/job.html"
    return render(request, template, {"job": job, "models": job.model_versions.all()})


#: bootstrap resamples of the leaderboard page's intervals (``?n_boot=`` asks for more, to 500;
#: the API's default is 200): the page fits one Bradley–Terry model per resample and board
PAGE_BOOTSTRAP = 50


@staff_required
def leaderboard(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(Project.objects.select_related("principle_set"), slug=slug)
    scope = request.GET.get("scope", "humans")
    both_bad = request.GET.get("both_bad", "tie")
    try:
        n_boot = min(max(int(request.GET.get("n_boot", PAGE_BOOTSTRAP)), 0), 500)
    except ValueError:
        n_boot = PAGE_BOOTSTRAP
    try:
        board = selectors.arena_leaderboard(project, scope=scope, both_bad=both_bad, n_boot=n_boot)
    except DomainError as exc:
        raise Http404(str(exc)) from exc
    return render(
        request,
        "registry/leaderboard.html",
        {"project": project, "board": board, "scope": scope, "both_bad": both_bad},
    )
