"""Fuzz every operation of the project's own OpenAPI schema (schemathesis, positive and negative
data) against the real app and database, as an admin and as an annotator: no 5xx, ever.
Bounded for CI (about 30 s): a few examples per operation, no shrinking, no example database;
``FUZZ_EXAMPLES`` raises the bound for a deeper run."""

import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from tests.api.conftest import build_world

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
BOTH = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def fuzz_operation(operation, headers, failures, *, modes=BOTH, examples=EXAMPLES, path=None):
    bounded = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    for mode in modes:
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=path)

        @bounded
        @given(case=strategy)
        def run(case):
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(
                    f"{response.status_code} {case.as_curl_command()}\n{response.text[:800]}"
                )

        try:
            run()
        except Unsatisfiable:  # nothing negative to generate for this operation
            assert mode is GenerationMode.NEGATIVE


@pytest.mark.django_db(transaction=True)
def test_no_server_errors_anywhere(make_user, principle_set, project, compare_tasks):
    world = build_world(make_user, principle_set, project, compare_tasks)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith("/api/v1/")]
    assert len(operations) > 50
    tokens = {
        role: Token.objects.get_or_create(user=world.users[role])[0].key
        for role in ("admin", "annotator")
    }
    admin = {"Authorization": f"Token {tokens['admin']}"}
    annotator = {"Authorization": f"Token {tokens['annotator']}"}
    failures: list[str] = []
    few = max(EXAMPLES // 2, 1)
    for operation in operations:
        existing = {"id": world.tasks[1].pk} if "{id}" in operation.path else None
        fuzz_operation(operation, admin, failures)  # random ids: mostly 404s and 400s
        if existing:  # rows that exist: deeper code paths
            fuzz_operation(operation, admin, failures, modes=BOTH[:1], examples=few, path=existing)
        fuzz_operation(operation, annotator, failures, modes=BOTH[:1], examples=few, path=existing)
    assert not failures, "\n\n".join(failures[:10])
