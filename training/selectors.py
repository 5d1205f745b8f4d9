"""Read paths for training runs."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from training.models import RunGroup, RunMetric, TrainingRun


def runs() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related(
        "snapshot__project", "output_model_version__registered_model", "created_by"
    ).defer("log_tail", "error", "config")


def run_groups() -> QuerySet[RunGroup]:
    return RunGroup.objects.select_related("project", "created_by").defer("request")


def group_for_page(pk: int) -> tuple[RunGroup, list[tuple[str, TrainingRun]]]:
    """A group and its runs, each with the principle its snapshot was built for."""
    group = RunGroup.objects.select_related("project__principle_set", "created_by").get(pk=pk)
    members = (
        runs()
        .filter(group=group)
        .select_related("snapshot")
        .defer(None)
        .defer("log_tail", "error", "config")
        .order_by("pk")
    )
    return group, [(run.snapshot.filters.get("principle") or "", run) for run in members]


def metric_series(run: TrainingRun) -> dict[str, list[tuple[int, float]]]:
    """``{metric name: [(step, value), …]}`` in step order."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, step, value in (
        RunMetric.objects.filter(run=run)
        .order_by("name", "step")
        .values_list("name", "step", "value")
    ):
        series[name].append((step, value))
    return dict(series)
