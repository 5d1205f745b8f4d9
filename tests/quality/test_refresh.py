"""Cached metrics: the debounced refresh request, the Celery task body, failures."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import tasks
from annotation.datasets.importers.judgments import import_judgments
from annotation.models import MetricsReport
from annotation.quality import reports as quality_reports
from config.celery import app as celery_app


@pytest.fixture
def queued(monkeypatch):
    """``(args, countdown)`` of each ``annotation.refresh_metrics`` queued, instead of sent."""
    calls = []

    def record(name, args=(), countdown=0, **options):
        assert name == "annotation.refresh_metrics"
        calls.append((tuple(args), countdown))

    monkeypatch.setattr(celery_app, "send_task", record)
    return calls


def test_request_is_debounced(
    labelled_project, queued, settings, django_capture_on_commit_callbacks
):
    settings.METRICS_REFRESH_DEBOUNCE_S = 30
    pid = labelled_project.pk
    with django_capture_on_commit_callbacks(execute=True):
        assert quality_reports.request_metrics_refresh(pid) is True
    reports = MetricsReport.objects.filter(project_id=pid)
    assert sorted(reports.values_list("kind", flat=True)) == ["discretion", "quality"]
    due = set(reports.values_list("refresh_due_at", flat=True))
    assert len(due) == 1 and timezone.now() + timedelta(seconds=25) < due.pop()
    assert queued == [((pid,), 30.0)]
    # a burst of further submissions: nothing new is queued, the due time stays
    with django_capture_on_commit_callbacks(execute=True):
        assert quality_reports.request_metrics_refresh(pid) is False
        assert quality_reports.request_metrics_refresh(pid) is False
    assert len(queued) == 1
    # "Recompute now" pulls the due time forward and queues an immediate run
    with django_capture_on_commit_callbacks(execute=True):
        assert quality_reports.request_metrics_refresh(pid, delay=0) is True
    assert queued[-1] == ((pid,), 0.0)
    # the task recomputes everything that is due and clears the mark
    result = tasks.refresh_metrics(pid)
    assert result == {"refreshed": 2, "failed": 0, "deferred": 0}
    for report in MetricsReport.objects.filter(project_id=pid):
        assert report.refresh_due_at is None and report.payload and report.computed_at
        assert report.compute_ms is not None and report.error == ""
    # after a run, the next request schedules again
    with django_capture_on_commit_callbacks(execute=True):
        assert quality_reports.request_metrics_refresh(pid) is True
    assert len(queued) == 3


def test_task_defers_reports_due_later(
    labelled_project, queued, django_capture_on_commit_callbacks
):
    report = quality_reports.get_report(labelled_project, "quality", {"scope": "all"})
    MetricsReport.objects.filter(pk=report.pk).update(
        refresh_due_at=timezone.now() + timedelta(seconds=20)
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = quality_reports.refresh_due_reports(labelled_project.pk)
    assert result == {"refreshed": 0, "failed": 0, "deferred": 1}
    ((args, countdown),) = queued
    assert args == (labelled_project.pk,) and 15 < countdown <= 20
    report.refresh_from_db()
    assert report.payload is None and report.refresh_due_at is not None


def test_failure_keeps_the_old_payload(labelled_project, queued):
    report = quality_reports.compute_and_store(labelled_project, "quality", {"scope": "all"})
    assert report.payload["judgments"] == 0
    # a reference that no longer exists makes the discretion computation fail
    bad = quality_reports.get_report(labelled_project, "discretion", {"reference": "ghost"})
    MetricsReport.objects.filter(pk=report.pk).update(
        params={"scope": "bogus"}, refresh_due_at=timezone.now()
    )
    result = quality_reports.refresh_due_reports(labelled_project.pk)
    assert result == {"refreshed": 0, "failed": 2, "deferred": 0}
    bad.refresh_from_db()
    report.refresh_from_db()
    assert "no annotator called 'ghost'" in bad.error and bad.payload is None
    assert "scope" in report.error and report.payload["judgments"] == 0


def test_get_report_creates_and_queues_once(
    labelled_project, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = quality_reports.get_report(labelled_project, "discretion", {"bootstrap": "10"})
        again = quality_reports.get_report(labelled_project, "discretion", {"bootstrap": 10})
    assert first.pk == again.pk and first.params == {"reference": None, "bootstrap": 10}
    assert quality_reports.is_pending(first)
    assert queued == [((labelled_project.pk,), 0.0)]
    with pytest.raises(quality_reports.DomainError):
        quality_reports.get_report(labelled_project, "discretion", {"colour": "red"})


def test_import_requests_a_refresh(
    labelled_project, write_csv, queued, django_capture_on_commit_callbacks
):
    path = write_csv("rm.csv", "row_id,reward_a,reward_b\n0,1,0\n")
    with django_capture_on_commit_callbacks(execute=True):
        import_judgments(project=labelled_project, path=path, fmt="reward-model", annotator="rm")
    assert queued and queued[0][0] == (labelled_project.pk,)
    assert (
        MetricsReport.objects.filter(project=labelled_project, refresh_due_at__isnull=False).count()
        == 2
    )


def test_broker_outage_is_logged_not_raised(labelled_project, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(celery_app, "send_task", boom)
    quality_reports._enqueue(labelled_project.pk, 0)
    assert "could not queue annotation.refresh_metrics" in caplog.text


def test_a_burst_of_judgments_asks_the_database_once(
    labelled_project, queued, settings, django_assert_num_queries
):
    """With a cache every process shares, a judgment that the due refresh will count costs no
    query; setting, moving or claiming a due refresh makes the next judgment ask again."""
    settings.METRICS_REFRESH_DEBOUNCE_S = 30
    settings.SHARED_CACHE = True
    pid = labelled_project.pk
    event = {"project_id": pid}
    quality_reports.refresh_after_judgments("judgment.created", event)
    assert MetricsReport.objects.filter(project_id=pid, refresh_due_at__isnull=False).count() == 2
    with django_assert_num_queries(0):
        quality_reports.refresh_after_judgments("judgment.created", event)
    quality_reports.request_metrics_refresh(pid, delay=0)  # "Recompute": due now
    due = MetricsReport.objects.filter(project_id=pid).values_list("refresh_due_at", flat=True)
    assert all(d <= timezone.now() for d in due)
    # a refresh due too soon to count on: every judgment asks the database again
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            quality_reports.refresh_after_judgments("judgment.created", event)
        assert len(queries) >= 2
