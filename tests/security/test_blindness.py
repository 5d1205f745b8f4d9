"""Annotators are blind by construction: every payload an annotator can read names responses
only by slot letter (A, B, … in the order that annotator was shown them), never by id, model or
source — asserted over the OpenAPI schema of every annotator-readable endpoint (the rows of the
authorization matrix an annotator may read) and over the real JSON and pages. Imports store each
task's responses in a seeded random order, so a response id says nothing about the dataset's
labels either."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from django.db import connection, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.datasets import bulk
from annotation.datasets.importers.hh_rlhf import import_hh_rlhf
from annotation.datasets.importers.preferences import import_preferences
from annotation.models import Assignment, Judgment, Prompt, Response, TaskResponse
from annotation.specs import PromptSpec, ResponseSpec
from annotation.vocabulary import SLOT_LETTERS
from annotation.workspace import leasing
from tests.api.conftest import build_world
from tests.api.test_authorization_matrix import MATRIX, body_for, call

pytestmark = pytest.mark.django_db
V1 = "/api/v1/"
ANNOTATOR = 2  # the annotator's column in the matrix (ROLES order)
READ = {200, 201}

# Field names that name a response by id, its model or its source, or a dataset's verdict.
FORBIDDEN = {
    "response", "response_id", "response_ids", "responses_ids", "preferred_response",
    "display_order", "model", "model_name", "model_a", "model_b", "source", "source_label",
    "generation_params", "author", "chosen", "rejected",
}  # fmt: skip
# Where a response is named: every leaf under these must be a string (a slot letter).
SLOTTED = {"ordering", "verdicts", "preferred_slot", "based_on"}
# Reviewed exceptions: fields with a forbidden name that say nothing about a response.
NOT_ABOUT_RESPONSES = {
    ("PrincipleSet", "source"),
    ("PrincipleSetDetail", "source"),
}  # the document a principle set cites

FIRST_RESPONSE_ID = 1_000_001  # far above any other row's id: an id in a payload is unmistakable


def _push_response_ids() -> None:
    """Make the next response ids start at ``FIRST_RESPONSE_ID``."""
    table = Response._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [table, FIRST_RESPONSE_ID - 1],
            )
        else:  # SQLite's AUTOINCREMENT never reuses an id below the largest one used
            cursor.execute(
                "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES (%s, %s)",
                [table, FIRST_RESPONSE_ID - 1],
            )


@pytest.fixture
def pushed_ids(db):
    _push_response_ids()


@pytest.fixture
def blind_world(pushed_ids, make_user, project):
    bulk.create_tasks(
        project=project,
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"Question {i}?"}],
                responses=[
                    ResponseSpec(f"Answer A{i}", "model:secret-a@1", "chosen"),
                    ResponseSpec(f"Answer B{i}", "model:secret-b@1", "rejected"),
                ],
                external_id=f"q{i}",
            )
            for i in range(6)
        ],
    )
    ids = set(Response.objects.values_list("id", flat=True))
    assert min(ids) >= FIRST_RESPONSE_ID
    return {
        "project": project,
        "annotator": make_user("blind-annotator"),
        "other": make_user("blind-other"),
        "admin": make_user("blind-admin", role="admin"),
        "response_ids": ids,
    }


def client_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# ---- the schema


def annotator_readable() -> list[tuple[str, str, int]]:
    """(method, schema path, status) of every matrix row an annotator may call and read."""
    rows = []
    for _, method, path, _, expected in MATRIX:
        if expected[ANNOTATOR] not in READ:
            continue
        template = re.sub(r"\{w\.[^}]+\}", "{id}", path).split("?")[0]
        rows.append((method.replace("-multipart", ""), V1 + template, expected[ANNOTATOR]))
    return rows


def violations(schema: dict, node: object, where: str, slotted: bool = False) -> Iterator[str]:
    """Fields of a response schema that name responses other than by slot letter."""
    seen: set[str] = set()

    def walk(node, where, slotted, component):
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if ref:
            if (ref, slotted) in seen:
                return
            seen.add((ref, slotted))
            name = ref.rsplit("/", 1)[-1]
            yield from walk(schema["components"]["schemas"][name], f"{where}→{name}", slotted, name)
            return
        for key in ("allOf", "oneOf", "anyOf"):
            for part in node.get(key, []):
                yield from walk(part, where, slotted, component)
        for name, prop in node.get("properties", {}).items():
            if name in FORBIDDEN and (component, name) not in NOT_ABOUT_RESPONSES:
                yield f"{where}.{name}: names a response by id, model or source"
            yield from walk(prop, f"{where}.{name}", slotted or name in SLOTTED, component)
        if "items" in node:
            yield from walk(node["items"], f"{where}[]", slotted, component)
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{where}{{}}", slotted, component)
        leaf = not any(k in node for k in ("properties", "items", "allOf", "oneOf", "anyOf"))
        if slotted and leaf and node.get("type") != "string":
            yield f"{where}: {node.get('type', 'untyped')}, not a slot letter"

    yield from walk(node, where, slotted, "")


def response_schema(schema: dict, method: str, path: str, status: int) -> dict | None:
    answer = schema["paths"][path][method]["responses"].get(str(status), {})
    return answer.get("content", {}).get("application/json", {}).get("schema")


def schema_as(user) -> dict:
    reply = client_as(user).get("/api/schema/", {"format": "json"})
    assert reply.status_code == 200
    return json.loads(reply.content)


def test_no_annotator_readable_endpoint_documents_a_response_id(make_user):
    schema = schema_as(make_user("schema-annotator"))
    readable = annotator_readable()
    paths = {(m, p) for m, p, _ in readable}
    for must in [("post", V1 + "assignments/{id}/submit/"), ("get", V1 + "judgments/{id}/"),
                 ("put", V1 + "judgments/{id}/"), ("post", V1 + "projects/{id}/next-task/"),
                 ("get", V1 + "demonstrations/"), ("post", V1 + "demonstrations/")]:  # fmt: skip
        assert must in paths, must
    found, checked = [], 0
    for method, path, status in readable:
        body = response_schema(schema, method, path, status)
        if body is not None:
            checked += 1
            found += violations(schema, body, f"{method.upper()} {path}")
    assert checked >= 15
    assert not found, "\n".join(found)


def test_the_check_catches_what_staff_see(make_user):
    """Staff keep ids: their schema shows them, and the same walk finds them (not vacuous)."""
    schema = schema_as(make_user("schema-admin", role="admin"))
    body = response_schema(schema, "get", V1 + "judgments/{id}/", 200)
    found = list(violations(schema, body, "GET judgments"))
    assert any("preferred_response" in f for f in found), found
    assert any(".ordering[][]: integer" in f for f in found), found
    body = response_schema(schema, "get", V1 + "demonstrations/{id}/", 200)
    assert any("based_on: integer" in f for f in violations(schema, body, "GET demo")), body


# ---- the real payloads


def integers(value: object, *, keys: bool = True) -> Iterator[int]:
    """Every integer in a JSON value; with ``keys``, no key may be a forbidden field name."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            assert not keys or key not in FORBIDDEN, key
            yield from integers(item, keys=keys)
    elif isinstance(value, list):
        for item in value:
            yield from integers(item, keys=keys)


def assert_blind(reply, response_ids: set[int], *, keys: bool = True) -> dict:
    assert reply.status_code in READ, (reply.status_code, reply.content[:300])
    body = reply.json()
    leaked = set(integers(body, keys=keys)) & response_ids
    assert not leaked, f"response ids {leaked} in {body}"
    assert "secret-" not in reply.content.decode()
    return body


def test_every_annotator_payload_names_responses_by_slot_only(blind_world):
    w = blind_world
    ids, project = w["response_ids"], w["project"]
    client = client_as(w["annotator"])
    lease = assert_blind(client.post(V1 + f"projects/{project.pk}/next-task/"), ids)
    assert [r["slot"] for r in lease["responses"]] == ["A", "B"]
    assignment = Assignment.objects.get(pk=lease["id"])
    a, b = assignment.display_order

    body = {
        "ordering": [["B"], ["A"]],
        "strength": 2,
        "verdicts": {"harmless": "B", "honest": "a", "helpful": "tie"},
        "decisive": ["harmless"],
        "idempotency_key": "b1",
    }
    url = V1 + f"assignments/{assignment.pk}/submit/"
    judged = assert_blind(client.post(url, body, format="json"), ids)
    replay = assert_blind(client.post(url, body, format="json"), ids)  # the stored one, read back
    assert judged == replay
    assert judged["ordering"] == [["B"], ["A"]]
    verdicts = {v["principle"]: v["preferred_slot"] for v in judged["verdicts"]}
    assert verdicts == {"harmless": "B", "honest": "A", "helpful": None}
    judgment = Judgment.objects.get(pk=judged["id"])
    assert judgment.ordering == [[b], [a]]  # stored by id, for staff and the trainers

    detail = assert_blind(client.get(V1 + f"judgments/{judgment.pk}/"), ids)
    assert detail == judged
    listed = assert_blind(client.get(V1 + "judgments/"), ids)
    assert listed["results"][0]["ordering"] == [["B"], ["A"]]
    edit = {"ordering": [["A", "B"]], "verdicts": {"harmless": "A"}}
    edited = assert_blind(client.put(V1 + f"judgments/{judgment.pk}/", edit, format="json"), ids)
    assert edited["ordering"] == [["A", "B"]]
    assert {v["principle"]: v["preferred_slot"] for v in edited["verdicts"]}["harmless"] == "A"

    demo = {"task": assignment.task_id, "text": "Better.", "based_on": "B", "cited": ["honest"]}
    made = assert_blind(client.post(V1 + "demonstrations/", demo, format="json"), ids)
    assert made["based_on"] == "B"
    assert assert_blind(client.get(V1 + f"demonstrations/{made['id']}/"), ids)["based_on"] == "B"
    assert assert_blind(client.get(V1 + "demonstrations/"), ids)["results"][0]["based_on"] == "B"

    assert_blind(client.get(V1 + "assignments/"), ids)
    assert_blind(client.get(V1 + f"assignments/{assignment.pk}/"), ids)
    second = assert_blind(client.post(V1 + f"projects/{project.pk}/next-task/"), ids)
    skipped = client.post(V1 + f"assignments/{second['id']}/skip/", {"reason": "unsure"})
    assert_blind(skipped, ids)

    # staff keep ids
    admin = client_as(w["admin"])
    staff_view = admin.get(V1 + f"judgments/{judgment.pk}/").json()
    assert staff_view["ordering"] == [[a, b]]
    assert {v["principle"]: v["preferred_response"] for v in staff_view["verdicts"]}[
        "harmless"
    ] == a
    assert admin.get(V1 + f"demonstrations/{made['id']}/").json()["based_on"] == b
    assert admin.get(V1 + f"assignments/{assignment.pk}/").json()["display_order"] == [a, b]


@pytest.fixture
def world(pushed_ids, make_user, principle_set, project, compare_tasks, settings, tmp_path):
    """The authorization matrix's world, its response ids far above every other id."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return build_world(make_user, principle_set, project, compare_tasks)


def test_the_matrix_rows_an_annotator_reads_leak_no_response_id(world):
    """Every annotator-readable row of the authorization matrix, answered for real."""
    ids = set(Response.objects.values_list("id", flat=True))
    assert min(ids) >= FIRST_RESPONSE_ID
    client = client_as(world.users["annotator"])
    answered = 0
    for name, method, path, body, expected in MATRIX:
        if expected[ANNOTATOR] not in READ:
            continue
        with transaction.atomic():
            reply = call(client, method, V1 + path.format(w=world), body_for(body, world, ""))
            assert reply.status_code == expected[ANNOTATOR], (name, reply.content[:300])
            # a principle set's ``source`` is the document it cites (NOT_ABOUT_RESPONSES)
            assert_blind(reply, ids, keys=not name.startswith("principle"))
            answered += 1
            transaction.set_rollback(True)
    assert answered >= 15


def test_raw_response_ids_are_refused_as_input(blind_world):
    w = blind_world
    client = client_as(w["annotator"])
    lease = client.post(V1 + f"projects/{w['project'].pk}/next-task/").json()
    a, b = Assignment.objects.get(pk=lease["id"]).display_order
    url = V1 + f"assignments/{lease['id']}/submit/"
    for body in (
        {"ordering": [[a], [b]]},
        {"ordering": [["A"], ["B"]], "verdicts": {"harmless": a}},
        {"ordering": [["A"], ["C"]]},
    ):
        reply = client.post(url, body, format="json")
        assert reply.status_code == 400, body
        assert "is not a slot letter of this task (A, B)" in reply.json()["detail"]
    assert not Judgment.objects.exists()
    demo = {"task": lease["task"], "text": "Mine.", "based_on": b}
    assert client.post(V1 + "demonstrations/", demo, format="json").status_code == 400


def test_the_pages_show_slots_never_ids(client, blind_world):
    w = blind_world
    client.force_login(w["annotator"])
    page = client.post(reverse("workspace", args=[w["project"].slug]), follow=True)
    assignment = Assignment.objects.get(annotator=w["annotator"])
    a, b = assignment.display_order
    form = {"choice": "1", "strength": "1", "v-harmless": "1", "decisive": ["harmless"]}
    client.post(reverse("workspace-submit", args=[assignment.pk]), form)
    judgment = Judgment.objects.get(annotator=w["annotator"])
    assert judgment.ordering == [[b], [a]]
    history = client.get(reverse("workspace-history", args=[w["project"].slug])).content.decode()
    detail = client.get(reverse("workspace-judgment", args=[judgment.pk])).content.decode()
    assert "B ≻ A" in history
    for html in (page.content.decode(), history, detail):
        assert not any(str(rid) in html for rid in w["response_ids"])
        assert "secret-" not in html


# ---- imports: the id order carries no label


def hh_file(tmp_path, count: int):
    path = tmp_path / "hh.jsonl"
    with path.open("w") as out:
        for i in range(count):
            context = f"\n\nHuman: Question number {i}?"
            record = {
                "chosen": f"{context}\n\nAssistant: Chosen reply {i}.",
                "rejected": f"{context}\n\nAssistant: Rejected {i}.",
            }
            out.write(json.dumps(record) + "\n")
    return path


def chosen_first_share(project) -> float:
    chosen_lower = total = 0
    for task in project.tasks.all():
        links = {
            label: rid
            for rid, label in TaskResponse.objects.filter(task=task).values_list(
                "response_id", "source_label"
            )
        }
        total += 1
        chosen_lower += links["chosen"] < links["rejected"]
    return chosen_lower / total


def test_hh_rlhf_import_stores_chosen_first_in_about_half_the_tasks(tmp_path, project):
    path = hh_file(tmp_path, 200)
    assert import_hh_rlhf(project=project, path=path) == 200
    share = chosen_first_share(project)
    assert 0.3 <= share <= 0.7, share
    positions = TaskResponse.objects.filter(task__project=project, source_label="chosen")
    first = positions.filter(position=0).count() / 200
    assert 0.3 <= first <= 0.7, first
    # reproducible: a re-import into the project stores each task's responses in the same order
    order = {
        t.prompt.external_id: [r.text for r in t.responses.order_by("id")]
        for t in project.tasks.select_related("prompt")
    }
    Prompt.objects.filter(project=project).delete()
    import_hh_rlhf(project=project, path=path)  # a re-import into the same project
    assert order == {
        t.prompt.external_id: [r.text for r in t.responses.order_by("id")]
        for t in project.tasks.select_related("prompt")
    }


def test_imported_preferences_still_name_the_chosen_reply(tmp_path, project):
    path = hh_file(tmp_path, 200)
    result = import_preferences(project=project, path=path, fmt="hh-rlhf", annotator="hh-labels")
    assert result.tasks == 200 and result.judgments == 200
    assert 0.3 <= chosen_first_share(project) <= 0.7
    texts = dict(Response.objects.values_list("id", "text"))
    for judgment in Judgment.objects.filter(task__project=project):
        (winner,), (loser,) = judgment.ordering
        assert texts[winner].startswith("Chosen reply") and texts[loser].startswith("Rejected")


def test_the_display_order_is_shuffled_per_lease(project, make_user):
    """What annotators see is shuffled again per lease (``randomize_positions``)."""
    specs = [
        PromptSpec(
            messages=[{"role": "user", "content": f"Q{i}"}],
            responses=[ResponseSpec(f"first {i}"), ResponseSpec(f"second {i}")],
            external_id=f"d{i}",
        )
        for i in range(60)
    ]
    bulk.create_tasks(project=project, specs=specs)
    assert project.randomize_positions
    annotator = make_user("shuffled")
    first_shown_first = 0
    for _ in range(60):
        lease = leasing.next_task(annotator=annotator, project=project)
        stored = list(
            TaskResponse.objects.filter(task_id=lease.task_id)
            .order_by("position")
            .values_list("response_id", flat=True)
        )
        first_shown_first += lease.display_order == stored
        leasing.skip_task(assignment=lease, annotator=annotator, reason="next")
    assert 0.2 <= first_shown_first / 60 <= 0.8, first_shown_first
    assert SLOT_LETTERS.startswith("AB")
