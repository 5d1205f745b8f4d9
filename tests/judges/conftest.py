"""A compare project and the loopback judge server."""

import pytest

from annotation.datasets import bulk
from tests.judges.server import JudgeServer


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # PBKDF2 at production strength costs 0.5 s per test user; tests need no such strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def pairs(project):
    """``project`` (3 principles) with six two-response compare tasks."""
    from annotation.specs import PromptSpec, ResponseSpec

    bulk.create_tasks(
        project=project,
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"Question {i}?"}],
                responses=[
                    ResponseSpec(f"A careful answer {i}", "model:a@1", "chosen"),
                    ResponseSpec(f"A rude answer {i}", "model:b@1", "rejected"),
                ],
                external_id=str(i),
                kind="compare",
            )
            for i in range(6)
        ],
    )
    return list(project.tasks.order_by("id"))


@pytest.fixture
def server():
    with JudgeServer() as srv:
        yield srv
