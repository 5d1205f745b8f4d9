"""Principle-set pages, for admins and managers (others 403, anonymous → login).

The list of sets with their versions; create a draft by rows or by pasting (YAML, one per
line, OpenAI Model Spec markdown: the importers' readers), preview, save; a version's page;
edit a draft; publish (confirmed); fork to the next version; the diff of two versions. Thin:
writes go through ``services``, reads through ``selectors`` (the diff is the API's).
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import PrincipleSet
from annotation.principles import forms, selectors, services
from annotation.roles import is_staff_role
from common.errors import DomainError

PAGE_SIZE = 50


def staff_only(view):
    """Logged-in admins and managers only (anonymous → login, others → 403)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_staff_role(request.user):
            raise PermissionDenied("principle sets are for admins and managers")
        return view(request, *args, **kwargs)

    return wrapper


@staff_only
def principle_sets(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    page = Paginator(selectors.set_names(search), PAGE_SIZE).get_page(request.GET.get("page"))
    versions = selectors.versions_by_name(list(page.object_list))
    return render(
        request,
        "annotation/principles/list.html",
        {"page": page, "sets": versions.items(), "q": search},
    )


def _create(request: HttpRequest, specs, name: str, description: str, source: str):
    return services.create_principle_set(
        name=name,
        principles=specs,
        description=description,
        source=source,
        created_by=request.user,
    )


@staff_only
def create_by_rows(request: HttpRequest) -> HttpResponse:
    formset_class = forms.row_formset(extra=3)
    data = request.POST if request.method == "POST" else None
    if data is not None and "add_row" in data:
        data = forms.with_one_more_row(data)
    set_form = forms.SetForm(data)
    formset = formset_class(data)
    validate = request.method == "POST" and "add_row" not in request.POST
    if validate and set_form.is_valid() & formset.is_valid():
        try:
            created = _create(
                request,
                formset.specs(),
                set_form.cleaned_data["name"],
                set_form.cleaned_data["description"],
                source="typed in",
            )
        except DomainError as exc:
            set_form.add_error(None, str(exc))
        else:
            messages.success(request, f"Draft {created.label} saved.")
            return redirect("principle-set", pk=created.pk)
    return render(
        request,
        "annotation/principles/create.html",
        {"set_form": set_form, "formset": formset, "show_errors": validate},
    )


@staff_only
def create_by_paste(request: HttpRequest) -> HttpResponse:
    form = forms.PasteForm(request.POST or None)
    preview = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if "save" not in request.POST:
            preview = form.specs
        else:
            try:
                created = _create(
                    request,
                    form.specs,
                    data["name"],
                    data["description"],
                    source=f"pasted ({data['format']})",
                )
            except DomainError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Draft {created.label} saved.")
                return redirect("principle-set", pk=created.pk)
    return render(request, "annotation/principles/paste.html", {"form": form, "preview": preview})


@staff_only
def principle_set(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(selectors.principle_set_pages(), pk=pk)
    return render(
        request,
        "annotation/principles/detail.html",
        {"set": version, "versions": selectors.versions_of(version)},
    )


@staff_only
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(selectors.principle_set_pages(), pk=pk)
    if version.is_published:
        messages.error(request, f"{version.label} is published and frozen: fork it to edit.")
        return redirect("principle-set", pk=version.pk)
    formset_class = forms.row_formset(extra=1)
    initial = [forms.PrincipleRowForm.initial_for(p) for p in version.principles.all()]
    data = request.POST if request.method == "POST" else None
    if data is not None and "add_row" in data:
        data = forms.with_one_more_row(data)
    form = forms.DescriptionForm(data, initial={"description": version.description})
    formset = formset_class(data, initial=initial)
    validate = request.method == "POST" and "add_row" not in request.POST
    if validate and form.is_valid() & formset.is_valid():
        try:
            services.edit_principle_set(
                principle_set=version,
                principles=formset.specs(),
                description=form.cleaned_data["description"],
            )
        except DomainError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Draft {version.label} saved.")
            return redirect("principle-set", pk=version.pk)
    return render(
        request,
        "annotation/principles/edit.html",
        {"set": version, "form": form, "formset": formset, "show_errors": validate},
    )


@staff_only
def publish(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST publishes (the version is frozen from then on)."""
    version = get_object_or_404(PrincipleSet, pk=pk)
    if request.method == "POST":
        try:
            services.publish_principle_set(principle_set=version)
        except DomainError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{version.label} published: it is frozen now.")
        return redirect("principle-set", pk=version.pk)
    return render(request, "annotation/principles/publish.html", {"set": version})


@staff_only
@require_POST
def fork(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(PrincipleSet, pk=pk)
    draft = services.fork_principle_set(principle_set=version, created_by=request.user)
    messages.success(request, f"Draft {draft.label} forked from {version.label}.")
    return redirect("principle-set", pk=draft.pk)


@staff_only
def diff(request: HttpRequest, pk: int) -> HttpResponse:
    """Two versions of ``pk``'s set (default: ``pk`` against its parent or previous version)."""
    version = get_object_or_404(PrincipleSet, pk=pk)
    versions = selectors.versions_of(version)
    if "base" in request.GET or "other" in request.GET:
        form = forms.DiffForm(request.GET, versions=versions)
    else:
        base = selectors.default_diff_base(version) or version
        form = forms.DiffForm({"base": base.pk, "other": version.pk}, versions=versions)
    comparison = None
    if form.is_valid():
        comparison = selectors.compare_versions(
            form.cleaned_data["base"], form.cleaned_data["other"]
        )
    return render(
        request,
        "annotation/principles/diff.html",
        {"set": version, "form": form, "diff": comparison},
    )
