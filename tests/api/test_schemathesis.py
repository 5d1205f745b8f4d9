"""Fuzz every operation of the project's own OpenAPI schema (schemathesis, positive and negative
data) against the real app and database, as an admin and as an annotator: no 5xx, ever.
Bounded for CI (about 30 s): a few examples per operation, no shrinking, no example database;
``FUZZ_EXAMPLES`` raises the bound for a deeper run."""

import json
import os
import re

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from tests.api.conftest import ROLES, build_world, client_for
from tests.api.test_authorization_matrix import MATRIX, V1, body_for

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


# ---------------------------------------------------------------- hostile payloads (issue 17)

HUGE = (2**70, 10**30)  # beyond a 64-bit integer column: OverflowError / out of range
INFINITE = "1e999"  # a JSON number that parses as infinity
BAD_BODIES = (  # (Content-Type, body), sent to every operation that takes a body
    ("application/json", b"[" * 50_000),  # deep JSON: RecursionError in a recursive parser
    ("application/json", b'{"name": "\xff\xfe", "url": "\xc3\x28"}'),  # invalid UTF-8
    ("application/json", b'{"name": "x"'),  # truncated
    ("application/json; charset=latin-1", b'{"name": "\xe9"}'),
    ("application/json; charset=nope", b'{"name": "x"}'),  # an unknown encoding
    ("text/plain", b'{"name": "x"}'),
    ("application/xml", b"<a>x</a>"),
    ("multipart/form-data", b"--x\r\n"),  # no boundary
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\n"),
    ("application/x-www-form-urlencoded", b"name=%ff%fe&events=%00"),
)


def resolve(raw: dict, node: dict) -> dict:
    """``node`` with its ``$ref``s followed."""
    while "$ref" in node:
        target = raw
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def numeric_fields(raw: dict, operation: dict) -> list[str]:
    """The writable integer and number fields of an operation's JSON body."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return []
    properties = resolve(raw, content["application/json"]["schema"]).get("properties", {})
    return [
        name
        for name, field in properties.items()
        if resolve(raw, field).get("type") in {"integer", "number"}
        and not resolve(raw, field).get("readOnly")
    ]


def numeric_leaves(value, path=()):
    """Paths of the numbers inside a JSON value."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numeric_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numeric_leaves(item, (*path, index))


def with_value(body, path, value):
    """A copy of ``body`` with ``value`` at ``path`` (created when missing)."""
    body = json.loads(json.dumps(body))
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body


def hostile_requests(raw: dict, path: str, method: str, existing: int):
    """(method, url, content type, body) of each hostile request to one operation, with no
    valid data around it: huge ids and query parameters, malformed bodies."""
    operation = raw["paths"][path][method]
    concrete = path.replace("{id}", str(existing))
    for value in HUGE:
        if "{id}" in path:
            yield method, path.replace("{id}", str(value)), None, None
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query":
                yield method, f"{concrete}?{parameter['name']}={value}", None, None
    if method in {"post", "put", "patch"}:
        for content_type, body in BAD_BODIES:
            yield method, concrete, content_type, body


def huge_valid_requests(raw: dict, world):
    """The authorization matrix's valid requests (each by a role it succeeds for), with one
    number at a time, or one numeric field of the operation's schema, made huge or infinite:
    these reach the services and the database."""
    for _, method, template, body, expected in MATRIX:
        if not isinstance(body, dict) or method not in {"post", "put", "patch"}:
            continue
        role = next(role for role, status in zip(ROLES, expected, strict=True) if status < 300)
        valid = body_for(body, world, role)
        path = V1 + template.format(w=world)
        schema_path = re.sub(r"/\d+/", "/{id}/", path).replace(
            "members/{id}/", "members/{member_pk}/"
        )
        fields = numeric_fields(raw, raw["paths"][schema_path][method])
        targets = dict.fromkeys([*numeric_leaves(valid), *((name,) for name in fields)])
        for target in targets:
            for value in (*HUGE, INFINITE):
                data = json.dumps(with_value(valid, target, value)).replace('"1e999"', INFINITE)
                yield role, method, path, data.encode()


@pytest.mark.django_db
def test_no_server_errors_for_hostile_payloads(make_user, principle_set, project, compare_tasks):
    """The issue's payloads on every operation of the schema: huge integers (2^70, 10^30) in
    every path id and query parameter, deep JSON, invalid UTF-8, unknown encodings and wrong
    Content-Types in every body (as an admin and as an annotator); huge and infinite numbers in
    each numeric field of valid requests. Each request in a savepoint rolled back after it:
    4xx, never a 5xx."""
    world = build_world(make_user, principle_set, project, compare_tasks)
    raw = SchemaGenerator().get_schema(request=None, public=True)  # no request: no DB close
    requests = [
        (role, method, url, content_type, body)
        for role in ("admin", "annotator")
        for path, item in raw["paths"].items()
        if path.startswith(V1)
        for operation_method in item
        for method, url, content_type, body in hostile_requests(
            raw, path, operation_method, world.tasks[1].pk
        )
    ]
    requests += [
        (role, method, url, "application/json", body)
        for role, method, url, body in huge_valid_requests(raw, world)
    ]
    assert len(requests) > 1000
    clients = {role: client_for(world, role) for role in ("admin", "manager", "annotator")}
    failures = []
    for role, method, url, content_type, body in requests:
        client = clients[role]
        client.raise_request_exception = False
        kwargs = {"content_type": content_type, "data": body} if body is not None else {}
        with transaction.atomic():
            response = client.generic(method.upper(), url, **kwargs)
            transaction.set_rollback(True)
        if response.status_code >= 500:
            failures.append(
                f"{response.status_code} {role} {method.upper()} {url} {content_type or ''} "
                f"{(body or b'')[:100]!r}"
            )
    assert not failures, f"{len(failures)} of {len(requests)} answered 5xx:\n" + "\n".join(failures)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "projects/", '{"name": "P2", "slug": "p2", "principle_set": 1e999}'),
        ("patch", "projects/{w.project.pk}/", '{"principle_set": 1e999}'),
        ("post", "snapshots/", '{"project": 1e999, "kind": "preference"}'),
        ("post", "webhooks/", '{"url": "https://example.org/h", "events": ["run.finished"], '
                              '"project": 1e999}'),
        ("patch", "webhooks/{w.hook.pk}/", '{"project": 1e999}'),
    ],
)  # fmt: skip
def test_an_id_that_json_reads_as_infinity_is_an_unknown_id(world, method, path, body):
    """``1e999`` would parse as infinity, which no id column holds: refused (400), not an
    OverflowError (500)."""
    client = client_for(world, "admin")
    client.raise_request_exception = False
    response = client.generic(
        method.upper(), V1 + path.format(w=world), body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
