"""A small world for API tests: one user per role, a published and a draft principle set, a
project with tasks, assignments and judgments by two annotators, a demonstration, a snapshot,
an import job, a webhook, a training run and a model version."""

from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient

from annotation.datasets import snapshots
from annotation.principles import services as principle_services
from annotation.workspace import demonstrations, judging, leasing

ROLES = ("admin", "manager", "annotator", "viewer", "anonymous")


@pytest.fixture(autouse=True)
def _roots(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.MEDIA_ROOT = tmp_path / "media"
    # PBKDF2 at production strength costs 0.5 s per test user; tests need no such strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def build_world(make_user, principle_set, project, compare_tasks):
    from annotation.models import ImportJob, Principle, ProjectMembership
    from annotation.webhooks import services as webhook_services
    from models_registry.models import ModelVersion, RegisteredModel
    from training.models import RunMetric, TrainingRun

    users = {
        "admin": make_user("api-admin", role="admin"),
        "manager": make_user("api-manager", role="manager"),
        "annotator": make_user("api-annotator", role="annotator"),
        "annotator2": make_user("api-annotator-2", role="annotator"),
        "viewer": make_user("api-viewer", role="viewer"),
        # members and non-members: an annotator account that manages the project, and an
        # annotator and a viewer account that are members of nothing
        "lead": make_user("api-lead", role="annotator"),
        "outsider": make_user("api-outsider", role="annotator"),
        "outsider_viewer": make_user("api-outsider-viewer", role="viewer"),
    }
    roles = {"annotator": "annotator", "annotator2": "annotator", "viewer": "viewer"}
    for name, role in {**roles, "lead": "manager"}.items():
        ProjectMembership.objects.update_or_create(
            project=project, user=users[name], defaults={"role": role}
        )
    ProjectMembership.objects.filter(  # as strict as a fresh install, whatever the fixtures
        user__in=[users["outsider"], users["outsider_viewer"]]
    ).delete()
    draft = principle_services.fork_principle_set(principle_set=principle_set)
    principle_services.update_principle(
        principle=draft.principles.get(key="honest"), title="Be truthful"
    )
    draft_principle = draft.principles.get(key="helpful")

    def lease_and_submit(user):
        assignment = leasing.next_task(annotator=user, project=project)
        first, second = assignment.display_order
        judgment = judging.submit_judgment(
            assignment=assignment,
            annotator=user,
            ordering=[[first], [second]],
            strength=2,
            verdicts={"harmless": first},
            decisive=["harmless"],
        )
        return assignment, judgment

    a1, j1 = lease_and_submit(users["annotator"])
    a2, j2 = lease_and_submit(users["annotator2"])
    open_lease = leasing.next_task(annotator=users["annotator"], project=project)
    demo = demonstrations.create_demonstration(
        annotator=users["annotator"], task=j1.task, text="An ideal answer.", cited=["honest"]
    )
    snapshot = snapshots.create_snapshot(project=project, kind="preference", run="inline")
    assert snapshot.status == "ready", snapshot.error
    job = ImportJob.objects.create(project=project, format="prompts", file_path="imports/x.jsonl")
    hook = webhook_services.create_webhook(url="https://example.org/h", events=["snapshot.ready"])
    run = TrainingRun.objects.create(kind="reward", name="rm-1", snapshot=snapshot)
    RunMetric.objects.create(run=run, step=1, name="loss", value=0.7)
    registered = RegisteredModel.objects.create(name="rm", kind="reward")
    version = ModelVersion.objects.create(
        registered_model=registered, version=1, dataset_snapshot=snapshot
    )
    return SimpleNamespace(
        users=users,
        principle_set=principle_set,
        draft=draft,
        draft_principle=draft_principle,
        principle=Principle.objects.filter(principle_set=principle_set).first(),
        project=project,
        tasks=compare_tasks,
        a1=a1,
        j1=j1,
        a2=a2,
        j2=j2,
        open_lease=open_lease,
        demo=demo,
        snapshot=snapshot,
        job=job,
        hook=hook,
        run=run,
        registered=registered,
        version=version,
        membership=ProjectMembership.objects.get(project=project, user=users["annotator"]),
        prompt=compare_tasks[0].prompt,
        response=compare_tasks[0].prompt.responses.first(),
    )


@pytest.fixture
def world(make_user, principle_set, project, compare_tasks):
    return build_world(make_user, principle_set, project, compare_tasks)


def client_for(world, role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(world.users[role])
    return client
