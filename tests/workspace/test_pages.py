"""The htmx workspace pages through Django's test client: flows, blindness, privacy, safety."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, Demonstration, Judgment, Response, Task
from annotation.workspace import judging, leasing

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def alice(annotators, client):
    (user,) = annotators(1, prefix="alice")
    client.force_login(user)
    return user


def lease_via_page(client, project, **headers):
    """Lease through the page: a POST (a GET leases nothing), followed to the task."""
    page = client.post(reverse("workspace", args=[project.slug]), follow=True, **headers)
    assert page.status_code == 200
    html = page.content.decode()
    match = re.search(r'data-assignment="(\d+)"', html)
    assignment = Assignment.objects.get(pk=int(match.group(1))) if match else None
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', html)
    return html, assignment, key.group(1) if key else None


def test_compare_page_is_blind_and_keyboard_labelled(client, alice, make_project):
    project = make_project(tasks=2)
    html, assignment, key = lease_via_page(client, project)
    assert 'data-kind="compare"' in html and key
    for principle in ("harmless", "honest", "helpful"):
        assert f'name="v-{principle}"' in html
    assert "Root" in html and "<kbd>?</kbd>" in html
    assert "role-system" in html and "role-user" in html
    # blindness: no source, and no response id anywhere (slots A/B only)
    assert "secret-model" not in html and "model:" not in html
    assert set(re.findall(r'name="choice" value="(\w+)"', html)) == {"0", "1", "tie"}
    assert set(re.findall(r'name="v-harmless" value="(\w+)"', html)) == {"0", "1", "tie", "na"}
    assert "response_id" not in html and "data-response" not in html
    texts = Response.objects.filter(pk__in=assignment.display_order).values_list("text", flat=True)
    assert all(text in html for text in texts)


def test_htmx_submit_maps_slots_to_responses_and_loads_the_next_task(client, alice, make_project):
    project = make_project(tasks=2)
    _, assignment, key = lease_via_page(client, project, **HX)
    a_id, b_id = assignment.display_order
    reply = client.post(
        reverse("workspace-submit", args=[assignment.pk]),
        {
            "idempotency_key": key,
            "choice": "1",
            "strength": "3",
            "v-harmless": "1",
            "v-honest": "tie",
            "v-helpful": "na",
            "decisive": ["harmless"],
            "rationale": "B",
            "confidence": "4",
            "time_spent_ms": "4200",
        },
        **HX,
    )
    assert reply.status_code == 200
    body = reply.content.decode()
    assert 'data-done="judgment"' in body and 'hx-trigger="load"' in body
    judgment = Judgment.objects.get()
    assert judgment.ordering == [[b_id], [a_id]] and judgment.strength == 3
    assert judgment.time_spent_ms == 4200 and judgment.confidence == 4
    verdicts = {
        v.principle.key: (v.verdict, v.preferred_response_id) for v in judgment.verdicts.all()
    }
    assert verdicts["harmless"] == ("prefers", b_id) and verdicts["honest"] == ("tie", None)
    # the retry of the same form (same key) returns the same judgment
    again = client.post(
        reverse("workspace-submit", args=[assignment.pk]),
        {"idempotency_key": key, "choice": "0"},
        **HX,
    )
    assert again.status_code == 200 and f'data-pk="{judgment.pk}"' in again.content.decode()
    assert Judgment.objects.count() == 1
    # the next task follows, with the flash
    nxt = client.post(reverse("workspace", args=[project.slug]) + "?done=judgment", **HX)
    assert "Saved." in nxt.content.decode() and "<html" not in nxt.content.decode()


def test_refused_submit_keeps_the_form_and_says_why(client, alice, make_project):
    project = make_project(tasks=1)
    _, assignment, key = lease_via_page(client, project, **HX)
    url = reverse("workspace-submit", args=[assignment.pk])
    reply = client.post(url, {"idempotency_key": key}, **HX)
    assert reply.status_code == 422
    assert reply["HX-Retarget"] == "#form-errors"
    assert "Choose A, B or tie" in reply.content.decode()
    reply = client.post(
        url,
        {"idempotency_key": key, "choice": "tie", "v-honest": "tie", "decisive": "honest"},
        **HX,
    )
    assert reply.status_code == 422 and "must prefer a response" in reply.content.decode()
    assert Judgment.objects.count() == 0


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"choice": "0", "v-honest": "7"}, "v-honest: &#x27;7&#x27; is not a slot, tie or na."),
        ({"choice": "0", "decisive": "nonsense"}, "&#x27;nonsense&#x27; is not a principle"),
        ({"choice": "5"}, "Choose A, B or tie"),
    ],
)
def test_malformed_slot_inputs_are_refused_by_name(client, alice, make_project, posted, message):
    project = make_project(tasks=1)
    _, assignment, key = lease_via_page(client, project, **HX)
    url = reverse("workspace-submit", args=[assignment.pk])
    reply = client.post(url, {"idempotency_key": key, **posted}, **HX)
    assert reply.status_code == 422 and message in reply.content.decode()
    assert Judgment.objects.count() == 0


def test_rank_needs_every_rank_in_range(client, alice, make_project):
    project = make_project(tasks=1, responses=3)
    _, assignment, key = lease_via_page(client, project, **HX)
    url = reverse("workspace-submit", args=[assignment.pk])
    reply = client.post(url, {"idempotency_key": key, "rank-0": "1", "rank-1": "4"}, **HX)
    assert reply.status_code == 422
    assert "rank-1: give every response a rank from 1 to 3." in reply.content.decode()
    assert Judgment.objects.count() == 0


def test_plain_post_without_javascript_redirects(client, alice, make_project):
    project = make_project(tasks=2)
    _, assignment, key = lease_via_page(client, project)
    reply = client.post(
        reverse("workspace-submit", args=[assignment.pk]),
        {"idempotency_key": key, "choice": "tie"},
    )
    assert reply.status_code == 302 and reply["Location"].endswith("?done=judgment")
    assert Judgment.objects.get().ordering == [assignment.display_order]


def test_rank_page_submits_buckets_with_ties(client, alice, make_project):
    project = make_project(tasks=1, responses=4)
    html, assignment, key = lease_via_page(client, project, **HX)
    assert 'data-kind="rank"' in html and html.count("data-rank-slot=") == 4
    ids = assignment.display_order
    reply = client.post(
        reverse("workspace-submit", args=[assignment.pk]),
        {
            "idempotency_key": key,
            "rank-0": "2",
            "rank-1": "1",
            "rank-2": "2",
            "rank-3": "3",
            "v-harmless": "1",
            "decisive": "harmless",
        },
        **HX,
    )
    assert reply.status_code == 200, reply.content
    assert Judgment.objects.get().ordering == [[ids[1]], [ids[0], ids[2]], [ids[3]]]


def test_demonstrate_page_saves_an_edited_response(client, alice, make_project):
    project = make_project(tasks=1, responses=2, kind="demonstrate")
    html, assignment, key = lease_via_page(client, project, **HX)
    assert 'data-kind="demonstrate"' in html and 'id="demo-sources"' in html
    reply = client.post(
        reverse("workspace-demonstrate", args=[assignment.pk]),
        {
            "idempotency_key": key,
            "text": "Better answer.",
            "based_on": "1",
            "cited": ["honest"],
            "time_spent_ms": "999",
        },
        **HX,
    )
    assert reply.status_code == 200 and 'data-done="demonstration"' in reply.content.decode()
    demo = Demonstration.objects.get()
    assert demo.based_on_id == assignment.display_order[1] and demo.text == "Better answer."
    assert Assignment.objects.get(pk=assignment.pk).state == "submitted"


def test_skip_needs_a_reason_and_hands_the_task_on(client, alice, make_project):
    project = make_project(tasks=1)
    _, assignment, _ = lease_via_page(client, project, **HX)
    url = reverse("workspace-skip", args=[assignment.pk])
    assert client.post(url, {}, **HX).status_code == 422
    reply = client.post(url, {"reason": "content", "note": "too graphic"}, **HX)
    assert 'data-done="skip"' in reply.content.decode()
    assignment.refresh_from_db()
    assert assignment.state == "skipped" and assignment.skip_reason == "content: too graphic"
    html, again, _ = lease_via_page(client, project, **HX)
    assert again is None and 'data-empty="1"' in html


def test_untrusted_markdown_is_inert(client, alice, make_project):
    project = make_project(tasks=1)
    task = Task.objects.get(project=project)
    Response.objects.filter(tasks=task).update(
        text="**bold** <script>alert(1)</script> <img src=x onerror=alert(2)> "
        '[click](javascript:alert(3)) <a href="javascript:alert(4)">raw</a>'
    )
    html, _, _ = lease_via_page(client, project)
    assert "<strong>bold</strong>" in html
    assert "<script>alert" not in html and "<img" not in html
    assert not re.search(r"<a[^>]*javascript", html) and not re.search(r"<[a-z]+[^>]*onerror", html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_nobody_sees_another_annotators_work(client, alice, annotators, make_project):
    project = make_project(tasks=2, overlap=2)
    (bob,) = annotators(1, prefix="bob")
    bob_lease = leasing.next_task(annotator=bob, project=project)
    bob_judgment = judging.submit_judgment(
        assignment=bob_lease,
        annotator=bob,
        ordering=[bob_lease.display_order],
        rationale="bob's private reasoning",
    )
    assert client.get(reverse("workspace-judgment", args=[bob_judgment.pk])).status_code == 404
    assert client.post(reverse("workspace-submit", args=[bob_lease.pk]), {}).status_code == 404
    assert client.post(reverse("workspace-skip", args=[bob_lease.pk]), {}).status_code == 404
    history = client.get(reverse("workspace-history", args=[project.slug])).content.decode()
    assert "bob" not in history and "No judgments yet" in history
    html, _, _ = lease_via_page(client, project)
    assert "bob's private reasoning" not in html


def test_history_edit_within_the_window_then_read_only(client, alice, make_project):
    project = make_project(tasks=1)
    _, assignment, key = lease_via_page(client, project)
    client.post(
        reverse("workspace-submit", args=[assignment.pk]),
        {"idempotency_key": key, "choice": "0", "v-honest": "0"},
    )
    judgment = Judgment.objects.get()
    history = client.get(reverse("workspace-history", args=[project.slug])).content.decode()
    assert "A ≻ B" in history and ">Edit<" in history
    url = reverse("workspace-judgment", args=[judgment.pk])
    page = client.get(url).content.decode()
    assert "data-editing" in page and 'value="0" checked' in page
    reply = client.post(
        url, {"choice": "1", "strength": "2", "v-harmless": "1", "decisive": "harmless"}
    )
    assert reply.status_code == 302
    judgment.refresh_from_db()
    b_id = assignment.display_order[1]
    assert judgment.ordering[0] == [b_id] and judgment.strength == 2
    Judgment.objects.filter(pk=judgment.pk).update(
        created_at=timezone.now() - timedelta(seconds=project.edit_window_seconds + 5)
    )
    page = client.get(url).content.decode()
    assert "Read-only" in page and "data-editing" not in page and "B ≻ A" in page
    reply = client.post(url, {"choice": "0"})
    assert reply.status_code == 422 and "read-only" in reply.content.decode()


def test_home_guidelines_and_roles(client, alice, annotators, make_project, make_user):
    project = make_project(
        tasks=2, overlap=2, guidelines="Read **carefully**. <script>x()</script>"
    )
    lease = leasing.next_task(annotator=alice, project=project)
    judging.submit_judgment(assignment=lease, annotator=alice, ordering=[lease.display_order])
    home = client.get(reverse("home")).content.decode()
    assert "1</strong> / 4 judgments done" in home and "data-mine-today>1<" in home
    guide = client.get(reverse("workspace-guidelines", args=[project.slug])).content.decode()
    assert "<strong>carefully</strong>" in guide and "<script>x()" not in guide
    assert "Be harmless" in guide and "Avoid serious harm." in guide
    viewer = make_user("viewer-1", role="viewer")
    client.force_login(viewer)
    assert client.get(reverse("workspace", args=[project.slug])).status_code == 403
    client.logout()
    assert client.get(reverse("workspace", args=[project.slug])).status_code == 302


def test_judgment_forms_share_their_fields_but_never_their_state(ws_principles):
    from django.http import QueryDict

    from annotation.workspace.forms import JudgmentForm

    principles = list(ws_principles.principles.order_by("position"))

    def form(query: str) -> JudgmentForm:
        return JudgmentForm(
            QueryDict(query), kind="compare", display_order=[7, 9], principles=principles
        )

    bad, good = form("choice=0&strength=9&confidence=x"), form("choice=1&strength=2&confidence=4")
    assert bad.fields["strength"] is good.fields["strength"]  # shared, not copied per form
    assert not bad.is_valid() and set(bad.errors) == {"strength", "confidence"}
    assert good.is_valid(), good.errors
    assert good.service_kwargs()["ordering"] == [[9], [7]]
    assert (good.cleaned_data["strength"], good.cleaned_data["confidence"]) == (2, 4)
