"""Shared fixtures: users by role, a published principle set and a small compare project."""

import os
from pathlib import Path

import pytest

from annotation.datasets import bulk
from annotation.principles import services as principle_services
from annotation.projects import services as project_services
from annotation.roles import forget_roles

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# ../shared/data beside the repository (tests that need it skip only when it is absent)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_artifacts(tmp_path_factory, settings, monkeypatch):
    """Each test writes artifacts under its own folder (workers it starts inherit the env)."""
    root = tmp_path_factory.mktemp("artifacts")
    settings.ARTIFACT_ROOT = root
    monkeypatch.setenv("ARTIFACT_ROOT", str(root))
    return root


@pytest.fixture(autouse=True)
def empty_cache():
    """Every test starts with an empty cache: with a shared cache (``CACHE_URL``), cached users
    and sessions of an earlier test or run must not answer for this test's rows."""
    from django.core.cache import cache

    cache.clear()


def _join_every_project(sender, instance, **kwargs) -> None:
    from annotation.models import Project, ProjectMembership

    if instance.role not in ("annotator", "viewer") or instance.user.is_superuser:
        return
    ProjectMembership.objects.bulk_create(
        [
            ProjectMembership(project_id=p, user_id=instance.user_id, role=instance.role)
            for p in Project.objects.values_list("pk", flat=True)
        ],
        ignore_conflicts=True,
    )
    ProjectMembership.objects.filter(user_id=instance.user_id).update(role=instance.role)
    forget_roles()  # bulk writes send no signal


def _everyone_joins(sender, instance, created: bool, **kwargs) -> None:
    from annotation.models import AnnotatorProfile, ProjectMembership

    if not created:
        return
    profiles = AnnotatorProfile.objects.filter(
        role__in=["annotator", "viewer"], user__is_superuser=False
    ).values_list("user_id", "role")
    ProjectMembership.objects.bulk_create(
        [ProjectMembership(project_id=instance.pk, user_id=u, role=r) for u, r in profiles],
        ignore_conflicts=True,
    )
    forget_roles()  # bulk writes send no signal


@pytest.fixture(autouse=True)
def upgraded_memberships(request):
    """Every annotator and viewer is a member of every project (with their global role), as
    migration 0008 leaves a deployment that upgrades: the tests written before project
    membership keep their meaning. Tests of membership itself opt out with
    ``@pytest.mark.strict_membership`` and grant memberships explicitly."""
    if request.node.get_closest_marker("strict_membership"):
        yield
        return
    from django.db.models.signals import post_save

    from annotation.models import AnnotatorProfile, Project

    post_save.connect(_join_every_project, sender=AnnotatorProfile, weak=False)
    post_save.connect(_everyone_joins, sender=Project, weak=False)
    try:
        yield
    finally:
        post_save.disconnect(_join_every_project, sender=AnnotatorProfile)
        post_save.disconnect(_everyone_joins, sender=Project)


@pytest.fixture
def make_user(db):
    """``make_user("alice", role="annotator")`` → a user with that profile role."""

    def make(username: str, role: str = "annotator", password: str = "pw-for-tests-1"):
        return project_services.create_user(username=username, password=password, role=role)

    return make


@pytest.fixture
def admin_user(make_user):
    user = make_user("admin-user", role="admin")
    user.is_superuser = True
    user.save(update_fields=["is_superuser"])
    return user


@pytest.fixture
def annotator(make_user):
    return make_user("annotator-1")


@pytest.fixture
def principle_set(db):
    from annotation.specs import PrincipleSpec

    return principle_services.create_principle_set(
        name="test-principles",
        principles=[
            PrincipleSpec(key="harmless", title="Be harmless", authority="root"),
            PrincipleSpec(key="honest", title="Be honest", authority="user"),
            PrincipleSpec(key="helpful", title="Be helpful", authority="guideline"),
        ],
        publish=True,
    )


@pytest.fixture
def project(principle_set):

    return project_services.create_project(
        name="Test project",
        slug="test-project",
        principle_set=principle_set,
        task_kinds=["compare"],
    )


@pytest.fixture
def compare_tasks(project):
    """Ten compare tasks in ``project``."""
    from annotation.specs import PromptSpec, ResponseSpec

    bulk.create_tasks(
        project=project,
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"Question {i}?"}],
                responses=[
                    ResponseSpec(f"Answer A{i}", "model:a@1"),
                    ResponseSpec(f"Answer B{i}", "model:b@1"),
                ],
                external_id=str(i),
            )
            for i in range(10)
        ],
    )
    return list(project.tasks.order_by("id"))


DB_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "live_server"}


def _uses_database(item: pytest.Item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    return item.get_closest_marker("django_db") is not None or bool(DB_FIXTURES & fixtures)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``TEST_PASS=postgres`` (the second of ``.ci/run``'s two passes, after the SQLite one)
    leaves out what the first pass already ran with nothing different to test: tests that touch
    neither the database nor a worker, and the long end-to-end training tests marked ``e2e``
    (plain ORM; they ran on the embedded default that ``scripts/run`` and ``scripts/demo`` use).
    Unset (the README's command) or any other value, every test runs."""
    if os.environ.get("TEST_PASS") != "postgres":
        return
    once = [
        item
        for item in items
        if item.get_closest_marker("e2e")
        or (not _uses_database(item) and not item.get_closest_marker("worker"))
    ]
    if once:
        kept = set(map(id, once))
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if id(item) not in kept]
