"""Training pages (admins and managers): launch, list, live run page, cancel, resume. Thin."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.roles import is_staff_role
from common.errors import DomainError
from training import groups, selectors, services, trainers
from training.charts import charts_for
from training.forms import PRECEDENCE_KINDS, LaunchForm, PrincipleRewardsForm, ResumeForm
from training.models import RunGroup, TrainingRun
from training.validation import LaunchRejected


def _staff(request: HttpRequest) -> None:
    if not is_staff_role(request.user):
        raise PermissionDenied("training is for admins and managers")


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    _staff(request)
    return render(
        request,
        "training/run_list.html",
        {
            "runs": selectors.runs()[:200],
            "groups": selectors.run_groups()[:20],
            "kinds": trainers.KINDS,
        },
    )


@login_required
def launch(request: HttpRequest, kind: str) -> HttpResponse:
    _staff(request)
    if kind not in trainers.KINDS:
        raise Http404("unknown run kind")
    # prefilled from "Train on this dataset" (a snapshot's page), "Train a policy to this
    # precedence" (the discretion page) and a run group's page
    initial = {
        name: request.GET[name]
        for name in ("snapshot", "precedence_group", "weights_from", "precedence_annotators")
        if request.GET.get(name)
    }
    form = LaunchForm(kind, request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = services.launch_run(
                kind=kind,
                config=form.config(),
                snapshot=data["snapshot"],
                base_model=data["base_model"] or "builtin:tiny",
                base_model_version=data["base_model_version"],
                reward_model_version=data.get("reward_model_version"),
                queue=data["queue"],
                num_processes=data["num_processes"],
                name=data["name"],
                created_by=request.user,
                precedence=form.precedence(),
            )
        except LaunchRejected as exc:
            form.reject(exc)
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Run {run.pk} queued on {run.queue}.")
            return redirect("training:run", pk=run.pk)
    query = "?" + urlencode({"snapshot": initial["snapshot"]}) if "snapshot" in initial else ""
    kinds = [(other, query) for other in trainers.KINDS]
    return render(request, "training/launch.html", {"form": form, "kind": kind, "kinds": kinds})


def _run_context(run: TrainingRun) -> dict:
    resumable = run.status in services.RESUMABLE and services.newest_checkpoint(run) is not None
    return {"run": run, "charts": charts_for(selectors.metric_series(run)), "resumable": resumable}


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _staff(request)
    run = get_object_or_404(TrainingRun, pk=pk)
    template = "training/_run_status.html" if request.htmx else "training/run_detail.html"
    return render(request, template, _run_context(run))


@login_required
@require_POST
def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    _staff(request)
    run = get_object_or_404(TrainingRun, pk=pk)
    try:
        run = services.request_cancel(run=run)
    except DomainError as exc:
        messages.error(request, str(exc))
    if request.htmx:
        return render(request, "training/_run_status.html", _run_context(run))
    return redirect("training:run", pk=pk)


@login_required
@require_POST
def resume(request: HttpRequest, pk: int) -> HttpResponse:
    """Resume a cancelled or failed run from its last checkpoint (a higher step extends it)."""
    _staff(request)
    run = get_object_or_404(TrainingRun, pk=pk)
    form = ResumeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
        return redirect("training:run", pk=pk)
    try:
        run = services.resume_run(run=run, max_steps=form.cleaned_data["max_steps"])
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run {run.pk} queued again, to step {run.max_steps}.")
    return redirect("training:run", pk=pk)


@login_required
def principle_rewards(request: HttpRequest) -> HttpResponse:
    """Launch "reward per principle": one reward model per principle, as one run group."""
    _staff(request)
    project = request.GET.get("project", "")  # from a project's datasets tab
    initial = {"project": int(project)} if project.isdigit() else {}
    form = PrincipleRewardsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            group = groups.launch_principle_rewards(
                project=data["project"],
                filters=form.filters(),
                aggregation=data["aggregation"],
                min_pairs=data["min_pairs"],
                config=form.config(),
                base_model=data["base_model"] or "builtin:tiny",
                base_model_version=data["base_model_version"],
                queue=data["queue"],
                num_processes=data["num_processes"],
                name=data["name"],
                created_by=request.user,
            )
        except LaunchRejected as exc:
            form.reject(exc)
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("training:group", pk=group.pk)
    return render(request, "training/principle_rewards.html", {"form": form})


@login_required
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _staff(request)
    try:
        group, members = selectors.group_for_page(pk)
    except RunGroup.DoesNotExist as exc:
        raise Http404("no such run group") from exc
    finished = group.status != RunGroup.Status.PREPARING and all(
        run.is_finished for _, run in members
    )
    return render(
        request,
        "training/group_detail.html",
        {
            "group": group,
            "members": members,
            "finished": finished,
            "policy_kinds": PRECEDENCE_KINDS,
        },
    )
