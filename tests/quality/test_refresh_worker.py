"""A judgment submitted in the workspace refreshes the quality page through a real Celery worker,
without anyone pressing Recompute (the post-commit event bus → the debounced refresh)."""

import re

import pytest
from django.urls import reverse

from annotation.models import Assignment, MetricsReport
from annotation.quality import reports
from tests.support import start_worker, stop, wait_for


def _shown_judgments(client, project) -> int | None:
    """The "judgments" figure of the project's quality page, people's judgments only (None
    while it is being computed)."""
    url = reverse("quality:project", args=[project.slug]) + "?scope=humans"
    html = client.get(url).content.decode()
    match = re.search(r"<div>judgments<b>(\d+)</b></div>", html)
    return int(match.group(1)) if match else None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_workspace_submission_refreshes_the_quality_page(
    client, labelled_project, make_user, settings
):
    settings.METRICS_REFRESH_DEBOUNCE_S = 0
    project = labelled_project
    humans = reports.normalize_params("quality", {"scope": "humans"})
    reports.compute_and_store(project, "quality", humans)
    staff = make_user("boss", role="admin")
    annotator = make_user("alice", role="annotator")
    client.force_login(staff)
    assert _shown_judgments(client, project) == 0

    worker = start_worker(settings.CELERY_BROKER_URL)
    try:
        client.force_login(annotator)
        page = client.post(reverse("workspace", args=[project.slug]), follow=True).content.decode()
        assignment = Assignment.objects.get(
            pk=int(re.search(r'data-assignment="(\d+)"', page).group(1))
        )
        key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page).group(1)
        reply = client.post(
            reverse("workspace-submit", args=[assignment.pk]),
            {"idempotency_key": key, "choice": "0", "strength": "2", "v-harmless": "0"},
            HTTP_HX_REQUEST="true",
        )
        assert reply.status_code == 200 and 'data-done="judgment"' in reply.content.decode()
        client.force_login(staff)
        refreshed = wait_for(
            lambda: (
                MetricsReport.objects.filter(
                    project=project, kind="quality", refresh_due_at__isnull=True
                )
                .exclude(payload=None)
                .filter(payload__judgments=1)
                .exists()
            ),
            timeout=120,
        )
    except Exception as exc:  # whatever failed, the worker is stopped
        raise AssertionError(f"{exc}\nworker output:\n{stop(worker)}") from exc
    stop(worker)
    assert refreshed
    assert _shown_judgments(client, project) == 1
