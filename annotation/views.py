"""htmx pages. Thin: they call selectors and services."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from . import selectors
from .roles import is_staff_role


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The admin/manager dashboard or the annotator's queue, by role."""
    template = (
        "annotation/home_staff.html"
        if is_staff_role(request.user)
        else ("annotation/home_annotator.html")
    )
    return render(request, template, {"projects": selectors.active_projects()})
