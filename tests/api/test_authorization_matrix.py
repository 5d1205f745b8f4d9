"""Every API endpoint × every role (and anonymous) × member / non-member → the expected status,
each request in its own savepoint so one role's write never changes what the next role sees. A
completeness check fails when an endpoint of the OpenAPI schema is missing from the matrix.

The annotator and the viewer are members of the project (with those roles); three more columns
(``MEMBER_COLUMNS``) are an annotator account that manages the project (``lead``) and an
annotator and a viewer account that are members of nothing: to them the project, and every
row of it, does not exist (404, absent from lists)."""

import json

import pytest
from django.db import transaction
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from tests.api.conftest import ROLES, client_for

V1 = "/api/v1/"
EVERYONE = (200, 200, 200, 200, 401)
READERS = (200, 200, 403, 200, 401)
STAFF_GET = (200, 200, 403, 403, 401)
ADMIN_GET = (200, 403, 403, 403, 401)
OWN = (200, 200, 200, 404, 401)  # one's own row: the viewer member has none
OTHERS = (200, 200, 404, 404, 401)
MANAGERS = (200, 200, 403, 403, 401)  # admins, global managers and the project's managers


def staff(ok):
    return (ok, ok, 403, 403, 401)


def jsonl_upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    line = json.dumps({"prompt": "Uploaded?", "responses": ["yes", "no"]}) + "\n"
    return {"file": SimpleUploadedFile("up.jsonl", line.encode()), "format": "prompts"}


# (name, method, path template, body or body factory, expected per ROLES order)
MATRIX = [
    ("me", "get", "me/", None, EVERYONE),
    ("token", "post", "auth/token/", "TOKEN", (200, 200, 200, 200, 200)),
    ("principle-sets list", "get", "principle-sets/", None, EVERYONE),
    (
        "principle-sets create",
        "post",
        "principle-sets/",
        {"name": "new-set", "principles": [{"key": "k", "title": "K"}]},
        staff(201),
    ),
    ("principle-sets detail", "get", "principle-sets/{w.principle_set.pk}/", None, EVERYONE),
    ("principle-sets publish", "post", "principle-sets/{w.draft.pk}/publish/", {}, staff(200)),
    ("principle-sets fork", "post", "principle-sets/{w.principle_set.pk}/fork/", {}, staff(201)),
    ("principle-sets diff", "get", "principle-sets/{w.draft.pk}/diff/", None, EVERYONE),
    ("principle-sets versions", "get", "principle-sets/{w.draft.pk}/versions/", None, EVERYONE),
    (
        "principle-sets add principle",
        "post",
        "principle-sets/{w.draft.pk}/principles/",
        {"key": "added", "title": "Added"},
        staff(201),
    ),
    ("principles list", "get", "principles/", None, EVERYONE),
    ("principles detail", "get", "principles/{w.principle.pk}/", None, EVERYONE),
    ("principles edit", "patch", "principles/{w.draft_principle.pk}/", {"title": "T"}, staff(200)),
    ("principles delete", "delete", "principles/{w.draft_principle.pk}/", None, staff(204)),
    ("projects list", "get", "projects/", None, EVERYONE),
    ("projects detail", "get", "projects/{w.project.pk}/", None, EVERYONE),
    (
        "projects create",
        "post",
        "projects/",
        {"name": "P2", "slug": "p2", "principle_set": "{w.principle_set.pk}"},
        staff(201),
    ),
    (
        "projects edit",
        "patch",
        "projects/{w.project.pk}/",
        {"guidelines": "Be careful"},
        staff(200),
    ),
    (
        "projects next-task",
        "post",
        "projects/{w.project.pk}/next-task/",
        {},
        (200, 200, 200, 403, 401),
    ),
    ("projects members list", "get", "projects/{w.project.pk}/members/", None, MANAGERS),
    (
        "projects members add",
        "post",
        "projects/{w.project.pk}/members/",
        {"who": "api-outsider", "role": "annotator", "max_per_day": 20},
        staff(201),
    ),
    (
        "projects members edit",
        "patch",
        "projects/{w.project.pk}/members/{w.membership.pk}/",
        {"max_judgments": 50, "is_active": False},
        MANAGERS,
    ),
    (
        "projects invitations create",
        "post",
        "projects/{w.project.pk}/invitations/",
        {"role": "viewer", "expires_days": 3},
        staff(201),
    ),
    (
        "projects bulk prompts",
        "post",
        "projects/{w.project.pk}/prompts/",
        {"records": [{"prompt": "Bulk?", "responses": ["a", "b"]}]},
        staff(201),
    ),
    (
        "projects upload import",
        "post-multipart",
        "projects/{w.project.pk}/imports/",
        jsonl_upload,
        staff(201),
    ),
    ("projects export", "get", "projects/{w.project.pk}/export/", None, READERS),
    ("prompts list", "get", "prompts/", None, READERS),
    ("prompts detail", "get", "prompts/{w.prompt.pk}/", None, READERS),
    ("responses list", "get", "responses/", None, READERS),
    ("responses detail", "get", "responses/{w.response.pk}/", None, READERS),
    ("tasks list", "get", "tasks/", None, READERS),
    ("tasks detail", "get", "tasks/{w.tasks[0].pk}/", None, READERS),
    ("assignments list", "get", "assignments/", None, EVERYONE),
    ("assignments own detail", "get", "assignments/{w.a1.pk}/", None, OWN),
    ("assignments other's detail", "get", "assignments/{w.a2.pk}/", None, OTHERS),
    (
        "assignments submit",
        "post",
        "assignments/{w.open_lease.pk}/submit/",
        {"ordering": [["A"], ["B"]], "strength": 1},
        (403, 403, 201, 404, 401),
    ),
    (
        "assignments skip",
        "post",
        "assignments/{w.open_lease.pk}/skip/",
        {"reason": "unsure"},
        (403, 403, 200, 404, 401),
    ),
    ("judgments list", "get", "judgments/", None, EVERYONE),
    ("judgments own detail", "get", "judgments/{w.j1.pk}/", None, OWN),
    ("judgments other's detail", "get", "judgments/{w.j2.pk}/", None, OTHERS),
    ("judgments edit own", "put", "judgments/{w.j1.pk}/", "EDIT", (403, 403, 200, 404, 401)),
    ("judgments edit other's", "put", "judgments/{w.j2.pk}/", "EDIT2", (403, 403, 404, 404, 401)),
    (
        "judgments flag",
        "post",
        "judgments/{w.j2.pk}/flag/",
        {"reason": "answered without reading"},
        (200, 200, 403, 403, 401),
    ),
    ("demonstrations list", "get", "demonstrations/", None, EVERYONE),
    ("demonstrations detail", "get", "demonstrations/{w.demo.pk}/", None, OWN),
    (
        "demonstrations create",
        "post",
        "demonstrations/",
        {"task": "{w.j1.task_id}", "text": "Better answer", "based_on": "A"},
        (400, 400, 201, 403, 401),  # staff hold no lease: no slot "A" for them
    ),
    ("snapshots list", "get", "snapshots/", None, READERS),
    (
        "snapshots create",
        "post",
        "snapshots/",
        {"project": "{w.project.pk}", "kind": "preference"},
        staff(201),
    ),
    ("snapshots detail", "get", "snapshots/{w.snapshot.pk}/", None, READERS),
    ("snapshots download", "get", "snapshots/{w.snapshot.pk}/download/", None, READERS),
    ("import-jobs list", "get", "import-jobs/", None, STAFF_GET),
    ("import-jobs detail", "get", "import-jobs/{w.job.pk}/", None, STAFF_GET),
    ("webhooks list", "get", "webhooks/", None, ADMIN_GET),
    (
        "webhooks create",
        "post",
        "webhooks/",
        {"url": "https://example.org/h", "events": ["judgment.created"]},
        (201, 403, 403, 403, 401),
    ),
    ("webhooks detail", "get", "webhooks/{w.hook.pk}/", None, ADMIN_GET),
    (
        "webhooks edit",
        "patch",
        "webhooks/{w.hook.pk}/",
        {"is_active": False},
        (200, 403, 403, 403, 401),
    ),
    ("webhooks delete", "delete", "webhooks/{w.hook.pk}/", None, (204, 403, 403, 403, 401)),
    ("webhooks deliveries", "get", "webhooks/{w.hook.pk}/deliveries/", None, ADMIN_GET),
    ("training-runs list", "get", "training-runs/", None, READERS),
    ("training-runs detail", "get", "training-runs/{w.run.pk}/", None, READERS),
    ("training-runs metrics", "get", "training-runs/{w.run.pk}/metrics/", None, READERS),
    (
        "training-runs launch",
        "post",
        "training-runs/",
        {"kind": "reward", "snapshot": "{w.snapshot.pk}", "config": {"max_steps": 3}},
        (201, 201, 403, 403, 401),
    ),
    (
        "training-runs cancel",
        "post",
        "training-runs/{w.run.pk}/cancel/",
        None,
        (200, 200, 403, 403, 401),
    ),
    # the matrix's run is queued: resuming it is a conflict (409) for those allowed to ask
    (
        "training-runs resume",
        "post",
        "training-runs/{w.run.pk}/resume/",
        None,
        (409, 409, 403, 403, 401),
    ),
    ("training-runs config schema", "get", "training-runs/config-schema/?kind=dpo", None, READERS),
    ("training-run-groups list", "get", "training-run-groups/", None, READERS),
    ("training-run-groups detail", "get", "training-run-groups/{w.group.pk}/", None, READERS),
    (
        "training-run-groups launch",
        "post",
        "training-run-groups/",
        {"project": "{w.project.pk}", "min_pairs": 1, "config": {"max_steps": 3}},
        (201, 201, 403, 403, 401),
    ),
    ("registered-models list", "get", "registered-models/", None, READERS),
    ("registered-models detail", "get", "registered-models/{w.registered.pk}/", None, READERS),
    ("model-versions list", "get", "model-versions/", None, READERS),
    ("model-versions detail", "get", "model-versions/{w.version.pk}/", None, READERS),
]


MEMBER_COLUMNS = ("lead", "outsider", "outsider_viewer")
NOT_FOUND = (404, 404, 404)
# (lead, outsider, outsider_viewer) where they differ from (annotator, annotator, viewer): the
# lead is an annotator account (global gates such as staff-only actions still refuse it) that
# manages the project; the outsiders meet a 404 wherever a row of the project is named.
MEMBERSHIP = {
    "projects detail": (200, 404, 404),
    "projects next-task": (200, 404, 404),
    "projects members list": (200, 404, 404),
    "projects members add": (201, 404, 404),
    "projects members edit": (200, 404, 404),
    "projects invitations create": (201, 404, 404),
    "projects export": (403, 403, 404),
    "prompts detail": (403, 403, 404),
    "responses detail": (403, 403, 404),
    "tasks detail": (403, 403, 404),
    "assignments own detail": NOT_FOUND,
    "assignments submit": NOT_FOUND,
    "assignments skip": NOT_FOUND,
    "judgments own detail": NOT_FOUND,
    "judgments edit own": NOT_FOUND,
    "demonstrations detail": NOT_FOUND,
    "demonstrations create": (400, 404, 404),
    "snapshots detail": (403, 403, 404),
    "snapshots download": (403, 403, 404),
}


def member_expectations(name: str, expected: tuple) -> tuple:
    """The statuses of ``MEMBER_COLUMNS`` for a row: as listed, else as its annotator and
    viewer members (endpoints that name no project row)."""
    return MEMBERSHIP.get(name, (expected[2], expected[2], expected[3]))


def fill(value, world):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return int(eval(value[1:-1], {}, {"w": world}))
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


def body_for(body, world, role):
    if body == "TOKEN":
        user = world.users["annotator"]
        return {"username": user.username, "password": "pw-for-tests-1"}
    if body in ("EDIT", "EDIT2"):  # the judgments were A ≻ B: reversed, by slot letter
        return {"ordering": [["B"], ["A"]], "strength": 1}
    return fill(body() if callable(body) else body, world)


def call(client, method, url, body):
    if method == "post-multipart":
        return client.post(url, body, format="multipart")
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "method", "path", "body", "expected"), MATRIX, ids=[row[0] for row in MATRIX]
)
def test_endpoint_by_role(world, name, method, path, body, expected):
    url = V1 + path.format(w=world)
    columns = ROLES + MEMBER_COLUMNS
    got = []
    for role in columns:
        with transaction.atomic():
            response = call(client_for(world, role), method, url, body_for(body, world, role))
            got.append(response.status_code)
            transaction.set_rollback(True)
    want = expected + member_expectations(name, expected)
    assert tuple(got) == want, f"{name}: {dict(zip(columns, got, strict=True))}"


# the lists each member reads rows from (viewers: the project's data; annotators: their work)
MEMBER_LISTS = {
    "viewer": ["projects/", "prompts/", "responses/", "tasks/", "snapshots/"],
    "annotator": ["projects/", "assignments/", "judgments/", "demonstrations/"],
}


@pytest.mark.django_db
def test_lists_hold_only_the_projects_of_members(world):
    """Every list a non-member may read is empty; the same list holds the member's rows."""

    def count(role, path):
        response = client_for(world, role).get(V1 + path)
        assert response.status_code == 200, (role, path)
        return response.json()["count"]

    for member, outsider in (("viewer", "outsider_viewer"), ("annotator", "outsider")):
        for path in MEMBER_LISTS[member]:
            assert count(member, path) > 0, (member, path)
            assert count(outsider, path) == 0, (outsider, path)


def test_matrix_covers_every_operation_of_the_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        (method.lower(), path)
        for path, item in schema["paths"].items()
        if path.startswith(V1)
        for method in item
    }
    covered = set()
    for _, method, path, _, _ in MATRIX:
        template = path
        for placeholder in (
            "{w.principle_set.pk}",
            "{w.draft.pk}",
            "{w.principle.pk}",
            "{w.draft_principle.pk}",
            "{w.project.pk}",
            "{w.prompt.pk}",
            "{w.response.pk}",
            "{w.tasks[0].pk}",
            "{w.a1.pk}",
            "{w.a2.pk}",
            "{w.open_lease.pk}",
            "{w.group.pk}",
            "{w.j1.pk}",
            "{w.j2.pk}",
            "{w.demo.pk}",
            "{w.snapshot.pk}",
            "{w.job.pk}",
            "{w.hook.pk}",
            "{w.run.pk}",
            "{w.registered.pk}",
            "{w.version.pk}",
            "{w.membership.pk}",
        ):
            template = template.replace(placeholder, "{id}")
        covered.add((method.replace("-multipart", ""), V1 + template.split("?")[0]))
    # /api/v1/registry/ (the MLflow-shaped registry API) has its own role matrix
    from tests.registry.test_api import MATRIX as REGISTRY_MATRIX

    for _, method, path, _, _ in REGISTRY_MATRIX:
        covered.add((method, V1 + "registry/" + path.split("?")[0]))
    # the judges' endpoints (training.judges) have their own role matrix
    from tests.judges.test_api import MATRIX as JUDGES_MATRIX

    for _, method, path, _, _ in JUDGES_MATRIX:
        template = path.replace("{job}", "{id}").replace("{template}", "{id}")
        covered.add((method, V1 + template))
    operations = {(method, path.replace("{member_pk}", "{id}")) for method, path in operations}
    missing = sorted(operations - covered)
    assert not missing, f"endpoints without an authorization row: {missing}"
    assert reverse("api:me") == "/api/v1/me/"
