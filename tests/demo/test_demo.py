"""The demo end to end: ``seed_demo`` (personas judging through the assignment engine, their
snapshot), ``seed_demo_training`` and a real Celery worker that trains the tiny reward model and
the DPO policy after it; then every page of the README's "Using it" table shows content."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from annotation.demo import personas, seed
from annotation.models import DatasetSnapshot, Judgment, Project
from annotation.quality import reports
from models_registry.models import ModelVersion
from tests.support import start_worker, stop, wait_for
from training import demo
from training.models import TrainingRun

pytestmark = [
    pytest.mark.worker,
    pytest.mark.training,
    pytest.mark.strict_membership,  # the seed grants the memberships itself
    pytest.mark.django_db(transaction=True),
]
FINISHED = ("succeeded", "failed", "cancelled")
# What a page shows when it has nothing to show.
EMPTY_STATES = (
    "No projects yet", "No active projects yet", "No judgments yet", "No model versions",
    "No runs yet", "No snapshots yet", "No tasks match", "No battles between different sources",
    "Nothing to do right now", "Not computed yet", "No judgments in this scope",
    "No conflicts measured", "No metrics.", "No principles.", "The snapshot has no rows",
)  # fmt: skip


def seeded_data_checks() -> DatasetSnapshot:
    """The personas' judgments, their disagreement and the figures the quality pages show."""
    project = Project.objects.get(slug=seed.PERSONA_PROJECT)
    judgments = Judgment.objects.filter(task__project=project)
    for name in personas.PERSONAS:
        assert judgments.filter(annotator__username=name).count() == 300, name
    assert judgments.filter(discretion=True).count() > 20
    assert judgments.filter(decisive_principles__isnull=False).distinct().count() > 500

    discretion = reports.get_report(project, "discretion").payload
    assert discretion["categories"]["consensus"] > 0 and discretion["categories"]["conflict"] > 0
    by_name = discretion["annotators"]
    assert set(by_name) == set(personas.PERSONAS)
    # the declared-precedence follower and the helpfulness-first persona: opposite orders
    assert by_name["candor"]["dd"]["prudence"] == pytest.approx(1.0)
    assert by_name["candor"]["dd"]["declared"] > 0.75 > 0.25 > by_name["prudence"]["dd"]["declared"]
    assert by_name["dash"]["da"] > 0.2 > by_name["prudence"]["da"]

    quality = reports.get_report(project, "quality").payload
    assert quality["judgments"] == 1200 and quality["agreement"]["alpha"] is not None
    kappa = {(c["a"], c["b"]): c["kappa"] for c in quality["agreement"]["cohen"]}
    assert kappa[("prudence", "candor")] < 0 < kappa[("prudence", "quill")]
    assert {"position", "too_fast"} <= set(quality["annotators"]["dash"]["flags"])

    snapshot = DatasetSnapshot.objects.get(project=project, name=seed.PERSONA_SNAPSHOT)
    assert (snapshot.status, snapshot.kind, snapshot.row_count) == ("ready", "preference", 250)
    return snapshot


def finished(name: str, worker) -> TrainingRun:
    try:
        run = wait_for(
            lambda: TrainingRun.objects.filter(name=name, status__in=FINISHED).first(),
            timeout=300,
            interval=1,
        )
        assert run.status == "succeeded", f"{run.error}\n{run.log_tail[-3000:]}"
        wait_for(
            lambda: ModelVersion.objects.filter(
                pk=run.output_model_version_id, model_discretion_profile__status="ready"
            ).exists(),
            timeout=120,
            interval=1,
        )
    except AssertionError as exc:
        with open(worker.log_path, errors="replace") as log:
            raise AssertionError(f"{exc}\n{log.read()[-6000:]}") from exc
    return run


def pages(snapshot: DatasetSnapshot) -> list[str]:
    """The staff pages of the README's "Using it" table, on the demo's data."""
    slug = seed.PERSONA_PROJECT
    return [
        "/",
        "/projects/new/",
        f"/projects/{slug}/settings/",
        f"/projects/{slug}/members/",
        "/principles/",
        f"/projects/{slug}/datasets/",
        f"/snapshots/{snapshot.pk}/",
        f"/projects/{slug}/tasks/",
        f"/quality/{slug}/",
        f"/quality/{slug}/discretion/",
        "/training/",
        "/registry/",
        f"/registry/arena/{slug}/",
        "/api/v1/",
        "/api/docs/",
        "/api/schema/",
    ]


def log_in(client: Client, username: str, password: str) -> None:
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, username


def assert_content(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    text = response.content.decode()
    shown = [empty for empty in EMPTY_STATES if empty in text]
    assert not shown, f"{url} shows {shown}"
    return text


@pytest.mark.e2e
def test_demo_seeds_trains_and_every_page_shows_content(settings, isolated_artifacts):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", "--limit", "20")
    snapshot = seeded_data_checks()
    judgments = Judgment.objects.count()
    call_command("seed_demo", "--limit", "20")
    call_command("seed_demo_training")
    call_command("seed_demo_training")
    assert Judgment.objects.count() == judgments and Project.objects.count() == 3
    assert TrainingRun.objects.get().name == demo.REWARD_RUN  # queued once

    worker = start_worker(
        settings.CELERY_BROKER_URL,
        queues="cpu,gpu",
        extra_env={"ARTIFACT_ROOT": str(isolated_artifacts)},
        one_job_per_child=True,
    )
    try:
        reward = finished(demo.REWARD_RUN, worker)
        policy = finished(demo.POLICY_RUN, worker)
    finally:
        stop(worker)
    assert reward.snapshot_id == policy.snapshot_id == snapshot.pk
    assert reward.eval_metrics["accuracy"] >= 0.75, reward.eval_metrics
    assert reward.eval_metrics["n"] == 50
    version = policy.output_model_version
    assert {link.role: link.parent_id for link in version.parent_links.all()} == {
        "reward": reward.output_model_version_id
    }
    assert version.model_discretion_profile["probe"]["held_out"]

    client = Client()
    log_in(client, "admin", "admin-demo-pass")
    for url in pages(snapshot):
        assert_content(client, url)
    assert demo.REWARD_RUN in assert_content(client, f"/registry/versions/{version.pk}/")
    client.logout()
    log_in(client, "alice", "alice-demo-pass")
    assert "hh-harmless" in assert_content(client, "/")
    assert_content(client, "/projects/hh-harmless/work/")
