"""Read paths for training runs."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from training.models import RunMetric, TrainingRun


def runs() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related(
        "snapshot__project", "output_model_version__registered_model", "created_by"
    ).defer("log_tail", "error", "config")


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
