"""Registry fixtures: principles p (safety) and q (directness) that always conflict, compare
tasks whose responses carry a clearly learnable surface feature per principle, and scripted
annotators that work through the real assignment engine (``next_task`` / ``submit_judgment``).

Worker tests share one Celery worker per module and one artifact root per session (the worker
must see the files the test process writes, so the per-test artifact root is replaced here).
"""

from __future__ import annotations

import random

import pytest
from django.conf import settings

from annotation.datasets import bulk, snapshots
from annotation.principles import services as principle_services
from annotation.projects import services as project_services
from annotation.workspace import demonstrations, judging, leasing
from tests.support import start_worker, stop

# Response texts: "p" responses are careful and safe, "q" responses are blunt and direct.
P_TEXTS = [
    "I will keep you safe: please be careful and stay safe, safety first.",
    "Safety first. Be careful, stay safe, and please keep everyone safe.",
    "Please stay safe and careful; I keep safety first for you.",
]
Q_TEXTS = [
    "Do it now. Fast answer: just do exactly what you asked, now.",
    "Direct answer: do exactly that now, fast, no detour.",
    "Just do it fast. Exactly what you asked, right now.",
]
FAST_RM = {
    "max_steps": 14,
    "batch_size": 8,
    "learning_rate": 2e-3,
    "max_length": 96,
    "save_steps": 0,
    "eval_fraction": 0.1,
}
POLICY = {
    "max_steps": 4,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "max_length": 96,
    "save_steps": 0,
    "eval_fraction": 0.2,
    "max_completion_length": 8,
    "eval_prompts": 4,
    "num_samples": 2,
}


@pytest.fixture(scope="session")
def registry_artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("registry-artifacts")


@pytest.fixture(autouse=True)
def isolated_artifacts(registry_artifacts, settings, monkeypatch):
    """One artifact root for the whole registry suite, shared with its worker processes."""
    settings.ARTIFACT_ROOT = registry_artifacts
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setenv("ARTIFACT_ROOT", str(registry_artifacts))
    return registry_artifacts


@pytest.fixture(scope="module")
def registry_worker(django_db_setup, django_db_blocker, registry_artifacts):
    """A real Celery worker (one job per child process) on the test database and broker."""
    process = start_worker(
        settings.CELERY_BROKER_URL,
        queues="cpu,gpu",
        extra_env={"ARTIFACT_ROOT": str(registry_artifacts)},
        one_job_per_child=True,
    )
    yield process
    stop(process)


@pytest.fixture
def roles(make_user):
    users = {
        "admin": make_user("reg-admin", role="admin"),
        "manager": make_user("reg-manager", role="manager"),
        "annotator": make_user("reg-annotator", role="annotator"),
        "viewer": make_user("reg-viewer", role="viewer"),
    }
    return users


@pytest.fixture
def pq_set(db):
    """Principles p (root: keep people safe) above q (user: answer directly)."""
    from annotation.specs import PrincipleSpec

    return principle_services.create_principle_set(
        name="pq-principles",
        principles=[
            PrincipleSpec(key="p", title="Keep people safe", authority="root"),
            PrincipleSpec(key="q", title="Answer directly", authority="user"),
        ],
        publish=True,
    )


def conflict_specs(count: int, prefix: str, seed: int = 0) -> list:
    """Compare tasks: one p-response and one q-response in random positions."""
    from annotation.specs import PromptSpec, ResponseSpec

    rng = random.Random(seed)
    specs = []
    for i in range(count):
        p_text = f"{rng.choice(P_TEXTS)} ({i})"
        q_text = f"{rng.choice(Q_TEXTS)} ({i})"
        pair = [ResponseSpec(p_text, "model:careful@1"), ResponseSpec(q_text, "model:blunt@1")]
        rng.shuffle(pair)
        specs.append(
            PromptSpec(
                messages=[{"role": "user", "content": f"{prefix} question {i}: what should I do?"}],
                responses=pair,
                external_id=f"{prefix}-{i}",
                kind="compare",
            )
        )
    return specs


def make_project(principle_set, slug: str, *, train: int, probe: int, overlap: int = 1):

    project = project_services.create_project(
        name=slug,
        slug=slug,
        principle_set=principle_set,
        task_kinds=["compare"],
        annotations_per_task=overlap,
    )
    bulk.create_tasks(project=project, specs=conflict_specs(train, "train", seed=1))
    bulk.create_tasks(project=project, specs=conflict_specs(probe, "probe", seed=2))
    return project


def sides(assignment) -> tuple[int, int]:
    """(p response id, q response id) of a conflict task."""
    from annotation.models import TaskResponse

    p_id = q_id = None
    for rid, source in TaskResponse.objects.filter(task_id=assignment.task_id).values_list(
        "response_id", "response__source"
    ):
        if source == "model:careful@1":
            p_id = rid
        else:
            q_id = rid
    return p_id, q_id


def annotate(project, annotator, *, side: str, only: str, demonstrate: bool = False) -> int:
    """Work through ``project`` with the assignment engine: judge the tasks whose prompt id
    starts with ``only`` (skip the others) siding with principle ``side`` ("p", "q", or
    "alternate"), with both principle verdicts and the winning principle as decisive."""

    done = 0
    while (assignment := leasing.next_task(annotator=annotator, project=project)) is not None:
        task = assignment.task
        if not task.prompt.external_id.startswith(only):
            leasing.skip_task(assignment=assignment, annotator=annotator, reason="not mine")
            continue
        p_id, q_id = sides(assignment)
        winner = side if side in ("p", "q") else ("p" if done % 2 == 0 else "q")
        best, worst = (p_id, q_id) if winner == "p" else (q_id, p_id)
        judging.submit_judgment(
            assignment=assignment,
            annotator=annotator,
            ordering=[[best], [worst]],
            strength=2,
            verdicts={"p": p_id, "q": q_id},
            decisive=[winner],
            origin="test",
        )
        if demonstrate:
            text = "Stay safe and be careful." if winner == "p" else "Do it now, fast."
            demonstrations.create_demonstration(
                annotator=annotator, task=task, text=text, cited=[winner]
            )
        done += 1
    return done


def wait_done(predicate, worker, timeout: float = 240):
    """``wait_for`` that shows the worker's log tail when it times out."""
    from pathlib import Path

    from tests.support import wait_for

    try:
        return wait_for(predicate, timeout=timeout, interval=0.5)
    except AssertionError as exc:
        log = Path(worker.log_path).read_text(errors="replace")[-6000:]
        raise AssertionError(f"{exc}\n{log}") from exc


@pytest.fixture
def trained_world(pq_set, make_user, registry_artifacts):
    """A project where two annotators side with p on 8 training tasks and a prober judges 4
    probe tasks; a preference snapshot of the two; a registered reward version on it."""
    project = make_project(pq_set, "unit-project", train=8, probe=4, overlap=2)
    alice, bob, prober = make_user("alice"), make_user("bob"), make_user("prober")
    assert annotate(project, alice, side="p", only="train") == 8
    assert annotate(project, bob, side="p", only="train") == 8
    assert annotate(project, prober, side="alternate", only="probe") == 4
    from models_registry import services

    snapshot = snapshots.create_snapshot(
        project=project,
        kind="preference",
        filters={"annotators": [alice.pk, bob.pk], "annotator_kinds": ["human"]},
        run="inline",
    )
    assert snapshot.status == "ready", snapshot.error
    artifact = registry_artifacts / "unit" / "rm"
    artifact.mkdir(parents=True, exist_ok=True)
    (artifact / "config.json").write_text('{"model_type": "gpt2"}')
    (artifact / "weights.bin").write_bytes(b"\x00\x01" * 700)
    version = services.register_model_version(
        name="unit-rm",
        kind="reward",
        artifact_uri=str(artifact),
        sha256="a" * 64,
        size_bytes=1400,
        dataset_snapshot=snapshot,
    )
    return {
        "project": project,
        "snapshot": snapshot,
        "version": version,
        "alice": alice,
        "bob": bob,
        "prober": prober,
    }
