"""Celery entry points for the annotation domain (thin: they call services). Services queue them
by name (``common.background.send``), so this module is the top of the import graph."""

from celery import shared_task
from celery.signals import worker_ready
from django.db import connections

from annotation.datasets import snapshots
from annotation.datasets.importers import jobs
from annotation.projects import services as project_services
from annotation.quality import reports
from annotation.webhooks import services as webhook_services


@shared_task(name="annotation.refresh_project_counts")
def refresh_project_counts(project_id: int) -> dict:
    project = project_services.refresh_project_counts(project_id=project_id)
    return {"tasks": project.task_count, "judgments": project.judgment_count}


@shared_task(name="annotation.refresh_metrics")
def refresh_metrics(project_id: int) -> dict:
    """Recount the project's counts and recompute its due quality/discretion reports
    (debounced: see reports.py; every judgment write requests it)."""
    project_services.recount_project(project_id=project_id)
    return reports.refresh_due_reports(project_id=project_id)


# ---------------------------------------------------------------- data in and out


@shared_task(name="annotation.build_snapshot")
def build_snapshot(snapshot_id: int) -> dict:
    snapshot = snapshots.build_snapshot(snapshot_id=snapshot_id)
    return {"status": snapshot.status, "rows": snapshot.row_count, "sha256": snapshot.sha256}


@worker_ready.connect
def fail_orphaned_snapshots(**_) -> None:
    """A worker starting: snapshots whose building process died are marked failed. (A pool
    process that dies while its worker lives gets its task handed again, acks late and reject
    on worker lost: that build starts the snapshot again.)"""
    snapshots.fail_orphaned_builds()
    connections.close_all()  # the worker's main process: no connection for forked children


@shared_task(name="annotation.run_import_job")
def run_import_job(job_id: int) -> dict:
    job = jobs.run_import_job(job_id=job_id)
    return {"status": job.status, "tasks": job.task_count, "judgments": job.judgment_count}


@shared_task(bind=True, name="annotation.deliver_webhook", max_retries=6)
def deliver_webhook(self, delivery_id: int) -> dict:
    """POST one signed event; retried with exponential backoff, then marked failed."""
    if webhook_services.deliver(delivery_id=delivery_id):
        return {"delivered": True}
    if self.request.retries >= self.max_retries:
        webhook_services.give_up(delivery_id=delivery_id)
        return {"delivered": False}
    raise self.retry(countdown=webhook_services.retry_delay(self.request.retries))
