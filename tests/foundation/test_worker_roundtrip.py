"""A real Celery worker process executes a task and the result lands in the database."""

import os

import pytest

from annotation.models import Project
from annotation.tasks import refresh_project_counts
from config.celery import app
from tests.support import start_worker, stop, wait_for

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _roundtrip(project, broker_url):
    worker = start_worker(broker_url)
    try:
        with app.connection_for_write(broker_url) as connection:
            refresh_project_counts.apply_async((project.pk,), connection=connection, queue="cpu")
        refreshed = wait_for(
            lambda: Project.objects.filter(
                pk=project.pk, counts_refreshed_at__isnull=False
            ).first(),
            timeout=90,
        )
    except Exception as exc:  # whatever failed, the worker is stopped
        raise AssertionError(f"{exc}\nworker output:\n{stop(worker)}") from exc
    stop(worker)
    assert refreshed.task_count == 10


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_roundtrip_on_redis(compare_tasks, project):
    Project.objects.filter(pk=project.pk).update(task_count=0, counts_refreshed_at=None)
    _roundtrip(project, REDIS_URL)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_roundtrip_on_configured_broker(compare_tasks, project, settings):
    """The README's default runtime (embedded SQLite broker unless CELERY_BROKER_URL is set)."""
    Project.objects.filter(pk=project.pk).update(task_count=0, counts_refreshed_at=None)
    _roundtrip(project, settings.CELERY_BROKER_URL)
