"""htmx pages. Thin: they call selectors and services."""

import uuid
from functools import cache

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.models import Assignment, Judgment, Project, Response
from annotation.principles import selectors as principle_selectors
from annotation.projects import selectors as project_selectors
from annotation.roles import (
    ANNOTATING_ROLES,
    READING_ROLES,
    is_staff_role,
    project_role,
    require_project_role,
)
from annotation.workspace import demonstrations, judging, leasing
from annotation.workspace import selectors as workspace_selectors
from annotation.workspace.forms import SKIP_REASONS, DemonstrationForm, JudgmentForm, SkipForm
from common.errors import DomainError
from common.rendering import render_markdown


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The admin/manager dashboard (every project with its counts, searchable, 50 a page) or,
    for anyone else, the queue of the projects they annotate and the projects they manage or
    view as a member."""
    if is_staff_role(request.user):
        query = request.GET.get("q", "").strip()
        page = project_selectors.staff_projects(query=query, page=request.GET.get("page"))
        return render(request, "annotation/home_staff.html", {"page": page, "query": query})
    context = {
        "queue": project_selectors.annotator_queue(annotator=request.user),
        "led": project_selectors.staff_projects(user=request.user).object_list,
    }
    return render(request, "annotation/home_annotator.html", context)


# ---- annotator workspace
#
# One URL leases and shows work (``work``); the forms post to the assignment. With htmx the
# answer is a fragment swapped into ``#workspace``: after a submit or skip, a tiny fragment that
# loads the next task (no full reload); on a refused submit, the error list is retargeted into
# ``#form-errors`` and the form keeps its state. Without JavaScript every form still works
# (redirect after POST).


def _project_or_404(
    request: HttpRequest, slug: str, roles: frozenset[str] = ANNOTATING_ROLES
) -> Project:
    """The active project, for a user whose role in it is one of ``roles`` (a non-member gets
    a 404; the role and membership are remembered per process: no query when warm)."""
    try:
        project = workspace_selectors.cached_workspace_project(slug=slug)
    except Project.DoesNotExist as exc:
        raise Http404("no such active project") from exc
    require_project_role(request.user, project.pk, roles)
    return project


def _assignment_or_404(request: HttpRequest, pk: int) -> Assignment:
    try:
        return workspace_selectors.assignment_for_annotator(
            annotator=request.user, assignment_id=pk, with_prompt=False
        )
    except Assignment.DoesNotExist as exc:
        raise Http404("no such assignment") from exc


NO_LONGER_MEMBER = "you are no longer a member of this project; nothing was saved"


def _left_project(request: HttpRequest, assignment: Assignment) -> HttpResponse | None:
    """The refusal of work on one's own lease in a project one no longer annotates in (a
    deactivated member: 409, shown in the form like any refused submission), else None."""
    if project_role(request.user, assignment.task.project_id) in ANNOTATING_ROLES:
        return None
    return _refused(request, assignment, [NO_LONGER_MEMBER], 409)


ANY_ROLE = ANNOTATING_ROLES | READING_ROLES
TASK_FORMS = frozenset({"compare", "rank", "demonstrate"})
DONE_MESSAGES = {
    "judgment": "Saved.",
    "demonstration": "Demonstration saved.",
    "skip": "Skipped.",
}


# The parts of a task form that depend only on (kind, response count, principle set) are
# rendered once per process: a published principle set never changes.
_FORM_STATIC: dict[tuple, SafeString] = {}


def _form_static(ws: workspace_selectors.Workspace) -> SafeString:
    principle_set = ws.project.principle_set
    key = (ws.kind, len(ws.slots), principle_set.pk, principle_set.published_at)
    html = _FORM_STATIC.get(key)
    if html is None:
        html = mark_safe(  # rendered by our own autoescaping template
            render_to_string(f"annotation/_{ws.kind}_static.html", {"ws": ws})
        )
        if principle_set.published_at is not None:
            _FORM_STATIC[key] = html
    return html


@cache
def _skip_reasons_html() -> SafeString:
    """The skip dialog's reasons: static, rendered once per process."""
    return mark_safe(  # rendered by our own autoescaping template
        render_to_string("annotation/_skip_reasons.html", {"skip_reasons": SKIP_REASONS})
    )


def _workspace_context(project: Project, assignment: Assignment | None, **extra) -> dict:
    ws = None
    if assignment is not None:
        ws = workspace_selectors.workspace_for(assignment)
    return {
        "project": project,
        "ws": ws,
        "form_static": _form_static(ws) if ws and ws.kind in TASK_FORMS else "",
        "idempotency_key": uuid.uuid4().hex,
        "skip_reasons_html": _skip_reasons_html(),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def work(request: HttpRequest, slug: str) -> HttpResponse:
    """GET shows the annotator's live lease in ``slug``, else a button to start; POST leases
    (or resumes) the next task. Leasing writes, so only a POST (CSRF-checked) leases: a link
    from another site leases nothing. Without htmx a POST redirects to the GET."""
    project = _project_or_404(request, slug)
    if request.method == "POST":
        try:
            assignment = leasing.next_task(annotator=request.user, project=project)
        except DomainError as exc:  # a cap reached
            context = _workspace_context(project, None, errors=[str(exc)], start=False)
            if request.htmx:
                return _partial(request, "annotation/_workspace.html", context, 409)
            return render(request, "annotation/workspace.html", context, status=409)
        if not request.htmx:
            return redirect(_work_url(project, assignment, request.GET.get("done", "")))
    else:
        assignment = leasing.live_lease(annotator=request.user, project=project)
    if assignment is not None:
        assignment = workspace_selectors.with_task(assignment, project)
    context = _workspace_context(
        project,
        assignment,
        flash=DONE_MESSAGES.get(request.GET.get("done", ""), ""),
        # a GET without a lease offers to start, unless a lease was just tried for nothing
        start=request.method == "GET" and "empty" not in request.GET,
    )
    if request.htmx:
        return _partial(request, "annotation/_workspace.html", context)
    return render(request, "annotation/workspace.html", context)


def _work_url(project: Project, assignment: Assignment | None, done: str = "") -> str:
    """The workspace's GET after a lease try: it shows the lease, or that nothing is left."""
    query = [f"done={done}"] if done in DONE_MESSAGES else []
    if assignment is None:
        query.append("empty=1")
    url = reverse("workspace", args=[project.slug])
    return url + ("?" + "&".join(query) if query else "")


def _partial(request: HttpRequest, template: str, context: dict, status: int = 200):
    """An htmx fragment. It needs no context processors (no role, no messages): only the CSRF
    token, so it is rendered without them — one query less per request."""
    html = render_to_string(template, {**context, "csrf_token": get_token(request)})
    return HttpResponse(html, status=status)


def _done(request: HttpRequest, project: Project, what: str, pk: int) -> HttpResponse:
    """After a submission (a POST): with htmx a fragment that POSTs for the next task; without,
    the next task is leased here and the redirect shows it (no extra round trip either way)."""
    if request.htmx:
        next_url = reverse("workspace", args=[project.slug]) + f"?done={what}"
        return _partial(
            request,
            "annotation/_done.html",
            {"what": what, "pk": pk, "next_url": next_url, "message": DONE_MESSAGES[what]},
        )
    try:
        assignment = leasing.next_task(annotator=request.user, project=project)
    except DomainError:  # a cap reached: the workspace's POST says so
        assignment = None
    return redirect(_work_url(project, assignment, what))


def _refused(
    request: HttpRequest, assignment: Assignment, errors: list[str], status: int = 422
) -> HttpResponse:
    if request.htmx:
        response = _partial(request, "annotation/_errors.html", {"errors": errors}, status)
        response["HX-Retarget"] = "#form-errors"
        response["HX-Reswap"] = "innerHTML"
        return response
    context = _workspace_context(assignment.task.project, assignment, errors=errors)
    return render(request, "annotation/workspace.html", context, status=status)


def _form_errors(form) -> list[str]:
    out = []
    for name, errors in form.errors.items():
        prefix = "" if name == "__all__" else f"{name}: "
        out.extend(prefix + str(e) for e in errors)
    return out


def _domain_status(exc: DomainError) -> int:
    return getattr(exc, "http_status", 422)


@login_required
@require_POST
def submit(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _assignment_or_404(request, pk)
    if refused := _left_project(request, assignment):
        return refused
    project = assignment.task.project
    form = JudgmentForm(
        request.POST,
        kind=assignment.task.kind,
        display_order=assignment.display_order,
        principles=principle_selectors.project_principles(project).rows,
    )
    if not form.is_valid():
        return _refused(request, assignment, _form_errors(form))
    try:
        judgment = judging.submit_judgment(
            assignment=assignment,
            annotator=request.user,
            idempotency_key=form.cleaned_data["idempotency_key"] or None,
            **form.service_kwargs(),
        )
    except DomainError as exc:
        return _refused(request, assignment, [str(exc)], _domain_status(exc))
    return _done(request, project, "judgment", judgment.pk)


@login_required
@require_POST
def demonstrate(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _assignment_or_404(request, pk)
    if refused := _left_project(request, assignment):
        return refused
    project = assignment.task.project
    form = DemonstrationForm(
        request.POST,
        display_order=assignment.display_order,
        principles=principle_selectors.project_principles(project).rows,
    )
    if not form.is_valid():
        return _refused(request, assignment, _form_errors(form))
    data = form.cleaned_data
    based_on = Response(pk=data["based_on"]) if data["based_on"] is not None else None
    try:
        demonstration = demonstrations.create_demonstration(
            annotator=request.user,
            task=assignment.task,
            text=data["text"],
            based_on=based_on,
            cited=list(data["cited"]),
            idempotency_key=data["idempotency_key"] or None,
            time_spent_ms=data["time_spent_ms"],
        )
    except DomainError as exc:
        return _refused(request, assignment, [str(exc)], _domain_status(exc))
    return _done(request, project, "demonstration", demonstration.pk)


@login_required
@require_POST
def skip(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _assignment_or_404(request, pk)
    if refused := _left_project(request, assignment):
        return refused
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _refused(request, assignment, _form_errors(form))
    try:
        leasing.skip_task(assignment=assignment, annotator=request.user, reason=form.reason_text())
    except DomainError as exc:
        return _refused(request, assignment, [str(exc)], _domain_status(exc))
    return _done(request, assignment.task.project, "skip", assignment.pk)


@login_required
@require_GET
def guidelines(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project_or_404(request, slug, ANY_ROLE)
    return render(
        request,
        "annotation/guidelines.html",
        {
            "project": project,
            "guidelines_html": render_markdown(project.guidelines),
            "principles": principle_selectors.project_principles(project).rows,
        },
    )


@login_required
@require_GET
def history(request: HttpRequest, slug: str) -> HttpResponse:
    """The annotator's own judgments and demonstrations (nobody else's)."""
    project = _project_or_404(request, slug)
    now = timezone.now()
    judgments = list(
        workspace_selectors.annotator_judgments(annotator=request.user, project=project)[:200]
    )
    rows = [
        {
            "judgment": j,
            "ordering": workspace_selectors.describe_ordering(
                j.ordering, j.assignment.display_order if j.assignment else []
            ),
            "editable": now <= workspace_selectors.judgment_editable_until(j),
        }
        for j in judgments
    ]
    demonstrations = workspace_selectors.annotator_demonstrations(
        annotator=request.user, project=project
    )
    return render(
        request,
        "annotation/history.html",
        {"project": project, "rows": rows, "demonstrations": demonstrations[:100]},
    )


@login_required
@require_http_methods(["GET", "POST"])
def judgment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One's own judgment: read-only, or an edit form while the edit window is open."""
    try:
        judgment = workspace_selectors.judgment_for_annotator(
            annotator=request.user, judgment_id=pk
        )
    except Judgment.DoesNotExist as exc:
        raise Http404("no such judgment") from exc
    if project_role(request.user, judgment.task.project_id) is None:
        raise Http404("you are not (or no longer) a member of this project")
    assignment = judgment.assignment
    if assignment is None:
        raise Http404("this judgment was not made in the workspace")
    project = judgment.task.project
    editable_until = workspace_selectors.judgment_editable_until(judgment)
    errors: list[str] = []
    if request.method == "POST":
        form = JudgmentForm(
            request.POST,
            kind=judgment.task.kind,
            display_order=assignment.display_order,
            principles=principle_selectors.project_principles(project).rows,
        )
        if form.is_valid():
            try:
                judging.edit_judgment(
                    judgment=judgment, annotator=request.user, **form.service_kwargs()
                )
            except DomainError as exc:
                errors = [str(exc)]
            else:
                return redirect(reverse("workspace-judgment", args=[pk]) + "?saved=1")
        else:
            errors = _form_errors(form)
        judgment = workspace_selectors.judgment_for_annotator(
            annotator=request.user, judgment_id=pk
        )
    assignment.task = judgment.task
    return render(
        request,
        "annotation/judgment_detail.html",
        {
            "project": project,
            "judgment": judgment,
            "ws": workspace_selectors.workspace_for(assignment, judgment=judgment),
            "ordering": workspace_selectors.describe_ordering(
                judgment.ordering, assignment.display_order
            ),
            "editable": timezone.now() <= editable_until,
            "editable_until": editable_until,
            "saved": request.GET.get("saved") == "1",
            "errors": errors,
        },
        status=422 if errors else 200,
    )
