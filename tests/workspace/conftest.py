"""Workspace fixtures: projects of compare / rank / demonstrate tasks and annotators."""

import pytest
from django.db import connection

from annotation.datasets import bulk
from annotation.principles import services as principle_services
from annotation.projects import services as project_services
from annotation.specs import PrincipleSpec, PromptSpec, ResponseSpec

PRINCIPLES = [
    PrincipleSpec(
        key="harmless", title="Be harmless", text="Avoid serious harm.", authority="root"
    ),
    PrincipleSpec(
        key="honest", title="Be honest", text="Do not state falsehoods.", authority="user"
    ),
    PrincipleSpec(
        key="helpful", title="Be helpful", text="Address the need.", authority="guideline"
    ),
]


def prompt_specs(count: int, responses: int, *, prefix: str = "Q", kind: str = "") -> list:
    return [
        PromptSpec(
            messages=[
                {"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": f"{prefix} question {i}?"},
            ],
            responses=[
                ResponseSpec(f"{prefix} answer {i}.{j}", f"model:secret-model-{j}@v{j}")
                for j in range(responses)
            ],
            external_id=f"{prefix}-{i}",
            kind=kind,
        )
        for i in range(count)
    ]


@pytest.fixture
def ws_principles(db):
    return principle_services.create_principle_set(
        name="ws-principles", principles=PRINCIPLES, publish=True
    )


@pytest.fixture
def make_project(ws_principles):
    """``make_project(tasks=10, responses=2, overlap=1, **settings)`` → a project with tasks."""
    counter = iter(range(1000))

    def make(tasks: int = 10, responses: int = 2, overlap: int = 1, kind: str = "", **settings):
        n = next(counter)
        project = project_services.create_project(
            name=f"Workspace project {n}",
            slug=f"ws-project-{n}",
            principle_set=ws_principles,
            annotations_per_task=overlap,
            task_kinds=[kind or ("compare" if responses == 2 else "rank")],
            **settings,
        )
        bulk.create_tasks(project=project, specs=prompt_specs(tasks, responses, kind=kind))
        return project

    return make


@pytest.fixture
def annotators(make_user):
    """``annotators(3)`` → three annotator users."""
    counter = iter(range(10_000))

    def make(count: int, prefix: str = "ann"):
        return [make_user(f"{prefix}-{next(counter)}") for _ in range(count)]

    return make


@pytest.fixture
def postgres_only(db):
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL-specific (SELECT … FOR UPDATE SKIP LOCKED / server restart); "
            "run with DATABASE_URL=postgres://…"
        )
