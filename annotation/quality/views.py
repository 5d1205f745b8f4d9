"""Quality and discretion pages, for admins and managers (others get 403).

Thin: every page reads a cached ``MetricsReport`` (``reports``) and shapes it for a template;
nothing is computed in the request. A page requested with htmx returns only its body partial.
While a report is being (re)computed the body polls itself every few seconds; the "Recompute"
button posts to :func:`refresh`, which requests a refresh and answers htmx with ``HX-Trigger:
metrics-refresh`` so the body reloads and starts polling.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from annotation.models import AnnotatorProfile, MetricsReport, Project
from annotation.quality import inputs, payloads, reports
from annotation.roles import READING_ROLES, STAFF_ROLES, is_staff_role, require_project_role

User = get_user_model()
QUALITY, DISCRETION = MetricsReport.Kind.QUALITY, MetricsReport.Kind.DISCRETION
Z95 = 1.959963984540054


def staff_required(view):
    """Logged-in admins and managers only (anonymous → login, others → 403)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_staff_role(request.user):
            raise PermissionDenied("admins and managers only")
        return view(request, *args, **kwargs)

    return wrapper


def _page(request: HttpRequest, full: str, partial: str, context: dict) -> HttpResponse:
    response = render(request, partial if request.htmx else full, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _project(request: HttpRequest, slug: str, roles: frozenset[str] = READING_ROLES) -> Project:
    """The project for a user whose role in it is one of ``roles``: admins, managers (global
    or of the project) and viewer members read; a non-member gets a 404, an annotator a 403."""
    project = get_object_or_404(Project.objects.select_related("principle_set"), slug=slug)
    require_project_role(request.user, project.pk, roles)
    return project


def _report_context(report: MetricsReport) -> dict[str, Any]:
    return {
        "report": report,
        "pending": reports.is_pending(report),
        "data": report.payload,
    }


# ---------------------------------------------------------------- presentation helpers


def _mix(hex_color: str, strength: float) -> str:
    """``hex_color`` blended over white with opacity ``strength`` ∈ [0, 1] (CSS value)."""
    strength = min(max(strength, 0.0), 1.0)
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    mixed = (round(255 + (c - 255) * strength) for c in (r, g, b))
    return "#" + "".join(f"{c:02x}" for c in mixed)


GOOD, BAD = "#3b8b5a", "#c2563a"
HIGH, LOW = "#2f5bd3", "#c2563a"


def heat_agreement(value: float | None) -> str:
    """α / κ: green towards 1, red below 0, white at chance."""
    if value is None:
        return ""
    return _mix(GOOD, value) if value >= 0 else _mix(BAD, -value)


def heat_centered(value: float | None, *, good_low: bool = False) -> str:
    """A share around 0.5: blue above, red below (or green/red for DD where low is good)."""
    if value is None:
        return ""
    d = (value - 0.5) * 2
    if good_low:
        return _mix(BAD, d) if d > 0 else _mix(GOOD, -d)
    return _mix(HIGH, d) if d > 0 else _mix(LOW, -d)


def _ci(p: float | None, sd: float | None, n: int) -> tuple[float | None, float | None]:
    """95% interval from the bootstrap SD (binomial SD when no bootstrap was run)."""
    if p is None or not n:
        return None, None
    if sd is None:
        sd = math.sqrt(p * (1 - p) / n)
    return max(0.0, p - Z95 * sd), min(1.0, p + Z95 * sd)


def _fmt_weight(w: Any) -> str:
    if w is None:
        return "undefined"
    if w == "inf":
        return "+∞"
    if w == "-inf":
        return "−∞"
    return f"{w:.2f}"


def _ranks(priority: list[list[str]]) -> dict[str, int]:
    """key → 1-based tier rank (ties share a rank)."""
    return {key: i + 1 for i, tier in enumerate(priority) for key in tier}


# ---------------------------------------------------------------- pages


@staff_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    projects = Project.objects.select_related("principle_set").order_by("name")
    return render(request, "quality/index.html", {"projects": projects})


def _scope(request: HttpRequest, project: Project, default: str | None = None) -> str:
    scope = request.GET.get("scope")
    if scope in inputs.SCOPES:
        return scope
    return default or payloads.default_scope(project)


@login_required
@require_GET
def project_quality(request: HttpRequest, slug: str) -> HttpResponse:
    """Agreement over time and per principle, consensus, annotator table."""
    project = _project(request, slug)
    scope = _scope(request, project)
    report = reports.get_report(project, QUALITY, {"scope": scope})
    context = {
        "project": project,
        "scope": scope,
        "scopes": inputs.SCOPES,
        **_report_context(report),
    }
    if report.payload:
        context.update(_quality_view(report.payload))
    return _page(request, "quality/project.html", "quality/_project_body.html", context)


def _quality_view(data: dict) -> dict[str, Any]:
    from annotation.quality.charts import time_chart

    buckets = [
        {**b, "label": datetime.fromtimestamp(b["start"], tz=UTC).date().isoformat()}
        for b in data["over_time"]["buckets"]
    ]
    chart = ""
    if len(buckets) >= 2:
        labels = [b["label"] for b in buckets]
        chart = mark_safe(
            time_chart(
                labels,
                {
                    "agreement with the final majority": [b["majority_agreement"] for b in buckets],
                    "Krippendorff's α (cumulative)": [b["cumulative_alpha"] for b in buckets],
                },
            )
        )
    principles = [
        {
            **p,
            "alpha_bg": heat_agreement(p["alpha"]),
            "app_bg": heat_agreement(p["applicability_alpha"]),
        }
        for p in data["per_principle"]
    ]
    ds = (data["consensus"].get("dawid_skene") or {}).get("accuracy", {})
    annotators = sorted(
        (
            {**d, "ds_accuracy": ds.get(name), "agree_bg": heat_agreement(d["majority_agreement"])}
            for name, d in data["annotators"].items()
        ),
        key=lambda d: (-d["n"], d["annotator"]),
    )
    oracles = [
        {
            **o,
            "principles": [{**p, "agree_bg": heat_agreement(p["kappa"])} for p in o["principles"]],
        }
        for o in data.get("oracles", [])  # reports computed before oracles had none
    ]
    return {
        "oracles": oracles,
        "time_chart": chart,
        "buckets": buckets,
        "principles": principles,
        "annotators": annotators,
        "agreement": data["agreement"],
        "consensus": data["consensus"],
    }


@login_required
@require_GET
def annotator_detail(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    """One annotator: reliability, speed, biases, gold results, discretion profile."""
    project = _project(request, slug)
    person = get_object_or_404(User, username=username)
    kind = (
        AnnotatorProfile.objects.filter(user=person).values_list("kind", flat=True).first()
        or AnnotatorProfile.Kind.HUMAN
    )
    scope = _scope(request, project, "all" if kind == AnnotatorProfile.Kind.MODEL else None)
    q_report = reports.get_report(project, QUALITY, {"scope": scope})
    reference = inputs.default_reference(project)
    d_report = reports.get_report(
        project, DISCRETION, {"reference": reference, "bootstrap": reports.DEFAULT_BOOTSTRAP}
    )
    context: dict[str, Any] = {
        "project": project,
        "person": person,
        "kind": kind,
        "scope": scope,
        "scopes": inputs.SCOPES,
        "report": q_report,
        "d_report": d_report,
        "pending": reports.is_pending(q_report) or reports.is_pending(d_report),
        "data": q_report.payload,
    }
    if q_report.payload:
        diag = q_report.payload["annotators"].get(username)
        context["diag"] = diag
        context["cohen"] = sorted(
            (
                {
                    "other": c["b"] if c["a"] == username else c["a"],
                    "kappa": c["kappa"],
                    "n": c["n"],
                }
                for c in q_report.payload["agreement"]["cohen"]
                if username in (c["a"], c["b"])
            ),
            key=lambda c: -c["n"],
        )
        ds = (q_report.payload["consensus"].get("dawid_skene") or {}).get("accuracy", {})
        context["ds_accuracy"] = ds.get(username)
    if d_report.payload:
        profile = d_report.payload["annotators"].get(username)
        if profile:
            titles = {p["key"]: p["title"] for p in d_report.payload["meta"]["principles"]}
            low, high = _ci(profile["da"], profile["da_sd"], profile["da_n"])
            context["discretion"] = {
                **profile,
                "ci_low": low,
                "ci_high": high,
                "errors": d_report.payload["meta"]["da_errors"].get(username),
                "tiers": [
                    [
                        {
                            "key": k,
                            "title": titles.get(k, k),
                            "w": _fmt_weight(profile["weights"][k]),
                        }
                        for k in tier
                    ]
                    for tier in profile["priority"]
                ],
                "undefined": [k for k, w in profile["weights"].items() if w is None],
                "dd": sorted(profile["dd"].items(), key=lambda kv: (kv[1] is None, kv[1] or 0)),
            }
        context["reference"] = d_report.payload["meta"]["verdict_source"]
    return _page(request, "quality/annotator.html", "quality/_annotator_body.html", context)


@login_required
@require_GET
def discretion(request: HttpRequest, slug: str) -> HttpResponse:
    """Category split, DA with intervals, PS heatmap with counts, revealed vs declared
    priority, DD matrix."""
    project = _project(request, slug)
    candidates = inputs.annotators_with_verdicts(project)
    names = {c["name"] for c in candidates}
    if "reference" in request.GET:
        reference = request.GET["reference"] or None
        if reference is not None and reference not in names:
            reference = inputs.default_reference(project)
    else:
        reference = inputs.default_reference(project)
    report = reports.get_report(
        project, DISCRETION, {"reference": reference, "bootstrap": reports.DEFAULT_BOOTSTRAP}
    )
    context: dict[str, Any] = {
        "project": project,
        "reference": reference,
        "candidates": candidates,
        **_report_context(report),
    }
    if report.payload:
        context.update(_discretion_view(report.payload, request.GET.get("annotator")))
    return _page(request, "quality/discretion.html", "quality/_discretion_body.html", context)


def _discretion_view(data: dict, selected: str | None) -> dict[str, Any]:
    from annotation.quality.charts import category_bar, interval_chart

    meta = data["meta"]
    n = data["pairs"]
    principles = meta["principles"]
    keys = [p["key"] for p in principles]
    titles = {p["key"]: p["title"] for p in principles}
    names = list(data["annotators"])
    rows = []
    for name, a in data["annotators"].items():
        low, high = _ci(a["da"], a["da_sd"], a["da_n"])
        rows.append(
            {
                "name": name,
                "kind": meta["kinds"].get(name, ""),
                "judgments": meta["judgments"].get(name, 0),
                "da": a["da"],
                "da_sd": a["da_sd"],
                "da_n": a["da_n"],
                "errors": meta["da_errors"].get(name),
                "ci_low": low,
                "ci_high": high,
                "dd_declared": a["dd"].get(inputs.DECLARED),
                "dd_human": a["dd"].get(inputs.HUMAN_LABEL),
                "top": [[titles.get(k, k) for k in tier] for tier in a["priority"][:3]],
            }
        )
    human_da = data["annotators"].get(inputs.HUMAN_LABEL, {}).get("da")
    charts = {
        "categories": mark_safe(category_bar(data["categories"])) if n else "",
        "da": mark_safe(
            interval_chart(
                [(r["name"], r["da"], r["ci_low"], r["ci_high"]) for r in rows],
                xlabel="discretion arbitrariness (95% interval)",
                reference=human_da,
            )
        )
        if any(r["da"] is not None for r in rows)
        else "",
    }
    if selected not in data["supremacy"]:
        selected = inputs.HUMAN_LABEL if inputs.HUMAN_LABEL in names else next(iter(names), None)
    heatmap = []
    if selected is not None:
        cells = {(r["winner"], r["loser"]): r for r in data["supremacy"][selected]}
        for winner in keys:
            line = []
            for loser in keys:
                cell = cells.get((winner, loser))
                line.append(
                    {
                        "ps": cell["ps"] if cell else None,
                        "n": cell["n"] if cell else 0,
                        "bg": heat_centered(cell["ps"]) if cell else "",
                        "diag": winner == loser,
                        "title": f"{titles[winner]} vs {titles[loser]}",
                    }
                )
            heatmap.append({"key": winner, "title": titles[winner], "cells": line})
    declared_w = meta["declared"]["weights"]
    declared_rank = _ranks(meta["declared"]["priority"])
    revealed = {name: _ranks(a["priority"]) for name, a in data["annotators"].items()}
    order = sorted(keys, key=lambda k: (declared_rank.get(k, 10**6), keys.index(k)))
    priority_rows = [
        {
            "key": k,
            "title": titles[k],
            "declared": declared_rank.get(k),
            "declared_w": declared_w.get(k),
            "authority": next(p["authority"] for p in principles if p["key"] == k),
            "ranks": [
                {
                    "rank": revealed[name].get(k),
                    "w": _fmt_weight(data["annotators"][name]["weights"].get(k)),
                }
                for name in names
            ],
        }
        for k in order
    ]
    dd_names = [*names, inputs.DECLARED]
    dd_rows = []
    for a in dd_names:
        line = []
        for b in dd_names:
            if a == b:
                value = 0.0
            elif a == inputs.DECLARED:
                value = data["annotators"][b]["dd"].get(inputs.DECLARED)
            else:
                value = data["annotators"][a]["dd"].get(b)
            line.append({"value": value, "bg": heat_centered(value, good_low=True), "self": a == b})
        dd_rows.append({"name": a, "cells": line})
    return {
        "pairs": n,
        "categories": [
            {"name": k, "count": v, "share": v / n if n else None}
            for k, v in data["categories"].items()
        ],
        "meta": meta,
        "rows": rows,
        "charts": charts,
        "selected": selected,
        "names": names,
        "keys": keys,
        "heatmap": heatmap,
        "priority_rows": priority_rows,
        "declared_tied": len(meta["declared"]["priority"]) <= 1,
        "dd_names": dd_names,
        "dd_rows": dd_rows,
    }


@login_required
@require_POST
def refresh(request: HttpRequest, slug: str) -> HttpResponse:
    """Request a recompute of every cached report of the project, now."""
    project = _project(request, slug, STAFF_ROLES)
    reports.request_metrics_refresh(project.pk, delay=0)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = "metrics-refresh"
        return response
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = reverse("quality:project", args=[project.slug])
    return redirect(target)
