"""Datasets in the browser: a project's snapshots (list, create form, building progress, dataset
card, preview, downloads, "Train on this dataset") and the staff tasks browser (filters, a task
with its judgments and verdicts, flag / unflag). Admins and managers only."""

import hashlib
import json
import re

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from annotation.datasets import bulk, snapshots
from annotation.models import DatasetSnapshot, Judgment, Task
from annotation.specs import PromptSpec, ResponseSpec
from config.celery import app as celery_app
from tests.data_io.conftest import judge, response_ids

HTMX = {"HTTP_HX_REQUEST": "true"}
STAFF = ("admin", "manager")
REFUSED = ("annotator", "viewer")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def judged(compare_tasks, alice):
    """Every compare task judged by alice (A over B, harmless decisive, honest a tie)."""
    for task in compare_tasks:
        a, b = response_ids(task)
        judge(
            task,
            alice,
            [[a], [b]],
            strength=2,
            verdicts={"harmless": a, "honest": "tie"},
            decisive=["harmless"],
        )
    Task.objects.filter(project=compare_tasks[0].project).update(submitted_count=1)
    return compare_tasks


@pytest.fixture
def ready(project, judged):
    snapshot = snapshots.create_snapshot(project=project, kind="preference", name="all")
    assert snapshot.status == "ready", snapshot.error
    return snapshot


def login(client, make_user, role):
    if role != "anonymous":
        client.force_login(make_user(f"user-{role}", role=role))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("role", REFUSED)
def test_non_members_meet_404_on_every_page(client, make_user, project, ready, role):
    from annotation.models import ProjectMembership

    task = ready.project.tasks.first()
    judgment = Judgment.objects.filter(task=task).first()
    login(client, make_user, role)
    ProjectMembership.objects.filter(project=project).delete()
    for url in page_urls(project, ready, task, judgment):
        assert client.get(url).status_code == 404, url


def page_urls(project, snapshot, task, judgment) -> list[str]:
    return [
        reverse("snapshot-list", args=[project.slug]),
        reverse("snapshot-create", args=[project.slug]),
        reverse("snapshot", args=[snapshot.pk]),
        reverse("snapshot-status", args=[snapshot.pk]),
        reverse("snapshot-download", args=[snapshot.pk]),
        reverse("staff-tasks", args=[project.slug]),
        reverse("staff-task", args=[task.pk]),
        reverse("judgment-flag", args=[judgment.pk]),
    ]


# ---------------------------------------------------------------- who may see the pages


@pytest.mark.django_db
@pytest.mark.parametrize("role", [*STAFF, *REFUSED, "anonymous"])
def test_role_matrix_on_every_page(client, make_user, project, ready, role):
    task = ready.project.tasks.first()
    judgment = Judgment.objects.filter(task=task).first()
    login(client, make_user, role)
    for url in page_urls(project, ready, task, judgment):
        response = client.get(url)
        if role in STAFF:
            assert response.status_code == 200, url
        elif role == "viewer":  # a viewer member reads; creating and flagging are for staff
            writes = ("/datasets/new/", "/flag/")
            assert response.status_code == (403 if url.endswith(writes) else 200), url
        elif role in REFUSED:
            assert response.status_code == 403, url
        else:
            assert response.status_code == 302 and "/login/" in response["Location"], url


@pytest.mark.django_db
@pytest.mark.parametrize("role", [*REFUSED, "anonymous"])
def test_others_cannot_create_or_flag(client, make_user, project, judged, role):
    judgment = Judgment.objects.first()
    login(client, make_user, role)
    client.post(reverse("snapshot-create", args=[project.slug]), {"kind": "preference"})
    client.post(reverse("judgment-flag", args=[judgment.pk]), {"flagged": "1", "reason": "spam"})
    assert not DatasetSnapshot.objects.exists()
    judgment.refresh_from_db()
    assert not judgment.flagged


# ---------------------------------------------------------------- the create form


def form_data(**overrides) -> dict:
    data = {
        "name": "from the browser",
        "kind": "preference",
        "format": "jsonl",
        "aggregation": "raw",
        "principle_set": "",
        "exclude_flagged": "on",
        "include_rationale": "on",
        "tie_policy": "drop",
        "style": "conversational",
        "prompt_style": "explicit",
        "expansion": "all_pairs",
    }
    return {**data, **overrides}


@pytest.mark.django_db
def test_form_offers_the_api_options(client, admin_user, project):
    client.force_login(admin_user)
    page = client.get(reverse("snapshot-create", args=[project.slug])).content.decode()
    for name in ("kind", "format", "aggregation", "annotator_kinds", "annotators", "date_from",
                 "date_to", "min_agreement", "exclude_flagged", "exclude_gold",
                 "exclude_discretion", "exclude_both_bad", "include_rationale", "tie_policy",
                 "style", "prompt_style", "expansion", "principle_set"):  # fmt: skip
        assert f'name="{name}"' in page, name
    for value in ("preference", "sft", "kto", "ranking", "raw", "parquet", "bradley_terry"):
        assert f'value="{value}"' in page
    assert f'value="{project.principle_set.label}"' in page


@pytest.mark.django_db
def test_create_inline_through_the_form(client, make_user, project, judged, alice):
    manager = make_user("manager-1", role="manager")
    client.force_login(manager)
    data = form_data(
        principle_set=project.principle_set.label,
        annotator_kinds=["human"],
        annotators="alice",
        min_agreement="0.5",
        date_from="2000-01-01T00:00",
    )
    response = client.post(reverse("snapshot-create", args=[project.slug]), data)
    snapshot = DatasetSnapshot.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("snapshot", args=[snapshot.pk])
    assert snapshot.status == "ready" and snapshot.row_count == 10
    assert snapshot.created_by == manager and snapshot.name == "from the browser"
    filters = snapshot.filters
    assert filters["exclude_flagged"] is True and filters["annotators"] == [alice.pk]
    assert filters["annotator_kinds"] == ["human"] and filters["min_agreement"] == 0.5
    assert filters["date_from"].startswith("2000-01-01")
    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="snapshot-status">ready<' in page
    assert 'data-testid="snapshot-rows">10<' in page
    assert "hx-get" not in page  # nothing to poll
    listing = client.get(reverse("snapshot-list", args=[project.slug])).content.decode()
    assert f'title="{snapshot.sha256}"' in listing and snapshot.sha256[:12] in listing
    assert "manager-1" in listing and "exclude_flagged=True" in listing


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_agreement": "2"}, "min_agreement must be between 0 and 1"),
        ({"kind": "sft", "prompt_style": "implicit"}, "prompt_style does not apply"),
        ({"annotators": "alice, nobody-here"}, "no such user: nobody-here"),
    ],
)
def test_invalid_options_are_shown_inline(
    client, admin_user, project, judged, alice, overrides, message
):
    client.force_login(admin_user)
    response = client.post(reverse("snapshot-create", args=[project.slug]), form_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not DatasetSnapshot.objects.exists()


@pytest.mark.django_db
def test_background_snapshot_shows_building_and_polls(
    client, admin_user, project, judged, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.SNAPSHOT_INLINE_MAX_JUDGMENTS = 0  # every snapshot goes to Celery
    sent = []
    monkeypatch.setattr(
        celery_app, "send_task", lambda name, args=(), **options: sent.append((name, args))
    )
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("snapshot-create", args=[project.slug]), form_data())
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.status == "building"
    assert ("annotation.build_snapshot", [snapshot.pk]) in [(n, list(a)) for n, a in sent]
    page = client.get(response["Location"]).content.decode()
    status_url = reverse("snapshot-status", args=[snapshot.pk])
    assert 'data-testid="snapshot-status">building<' in page
    assert f'hx-get="{status_url}"' in page and 'hx-trigger="every 1s"' in page
    assert "<script>" not in page.split("</head>")[1]  # no inline script (CSP)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(progress=0.42)
    fragment = client.get(status_url, **HTMX)
    body = fragment.content.decode()
    assert body.lstrip().startswith('<section id="snapshot-status"')
    assert 'data-testid="snapshot-percent">42%<' in body and "<html" not in body
    snapshots.build_snapshot(snapshot_id=snapshot.pk)  # what the worker does
    done = client.get(status_url, **HTMX)
    assert done["HX-Refresh"] == "true"  # the page reloads with the card and the preview
    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="snapshot-rows">10<' in page and "hx-get" not in page


# ---------------------------------------------------------------- card, preview, downloads


@pytest.fixture
def html_project(project, alice):
    """25 tasks whose responses carry HTML, each judged once with principle verdicts."""
    bulk.create_tasks(
        project=project,
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"Prompt {i} <b>bold</b>?"}],
                responses=[
                    ResponseSpec(f'<script>alert("x{i}")</script> answer A{i}', "model:a@1"),
                    ResponseSpec(f"<img src=x onerror=boom{i}> answer B{i}", "model:b@1"),
                ],
            )
            for i in range(25)
        ],
    )
    for i, task in enumerate(project.tasks.order_by("id")):
        a, b = response_ids(task)
        verdicts = {"harmless": a, "honest": b} if i % 5 == 0 else {"harmless": a}
        judge(task, alice, [[a], [b]], strength=1, verdicts=verdicts, decisive=["harmless"])
    return project


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_preview_shows_20_escaped_rows_and_the_card(client, admin_user, html_project, fmt):
    snapshot = snapshots.create_snapshot(project=html_project, kind="preference", fmt=fmt)
    assert snapshot.status == "ready" and snapshot.row_count == 25
    client.force_login(admin_user)
    page = client.get(reverse("snapshot", args=[snapshot.pk])).content.decode()
    assert page.count('data-testid="preview-row"') == 20
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(" in page and "&lt;img src=x onerror=boom" in page
    assert 'data-testid="card-rows">25<' in page
    assert 'data-testid="card-agreement">100.0%<' in page  # one judgment a pair
    assert "consensus 20 · conflict 5 · indifference 0" in page
    assert "<code>harmless</code></td><td>25<" in page


@pytest.mark.django_db
def test_jsonl_download_streams_the_file(client, admin_user, ready):
    client.force_login(admin_user)
    response = client.get(reverse("snapshot-download", args=[ready.pk]))
    body = b"".join(response.streaming_content)
    assert response.status_code == 200 and response["X-Content-SHA256"] == ready.sha256
    assert hashlib.sha256(body).hexdigest() == ready.sha256
    assert 'filename="test-project-preference-' in response["Content-Disposition"]
    assert len(body.splitlines()) == ready.row_count


@pytest.mark.django_db
def test_parquet_download_and_its_jsonl_conversion(client, admin_user, project, judged, tmp_path):
    snapshot = snapshots.create_snapshot(project=project, kind="preference", fmt="parquet")
    client.force_login(admin_user)
    url = reverse("snapshot-download", args=[snapshot.pk])
    body = b"".join(client.get(url).streaming_content)
    assert hashlib.sha256(body).hexdigest() == snapshot.sha256
    (tmp_path / "s.parquet").write_bytes(body)
    table = pq.read_table(tmp_path / "s.parquet")
    lines = b"".join(client.get(url + "?as=jsonl").streaming_content).splitlines()
    assert len(lines) == table.num_rows == snapshot.row_count
    assert json.loads(lines[0])["chosen"] == table.to_pylist()[0]["chosen"]


@pytest.mark.django_db
def test_download_of_a_building_snapshot_is_refused(client, admin_user, project):
    snapshot = DatasetSnapshot.objects.create(
        project=project, principle_set=project.principle_set, kind="preference"
    )
    client.force_login(admin_user)
    assert client.get(reverse("snapshot-download", args=[snapshot.pk])).status_code == 409


@pytest.mark.django_db
def test_train_on_this_dataset_prefills_the_launch_form(client, admin_user, ready):
    client.force_login(admin_user)
    page = client.get(reverse("snapshot", args=[ready.pk])).content.decode()
    launch = f"{reverse('training:launch', args=['reward'])}?snapshot={ready.pk}"
    assert f'href="{launch}"' in page
    assert f'href="{reverse("training:launch", args=["dpo"])}?snapshot={ready.pk}"' in page
    form = client.get(launch).content.decode()
    assert re.search(rf'<option value="{ready.pk}" selected>', form)
    plain = client.get(reverse("training:launch", args=["reward"])).content.decode()
    assert not re.search(rf'<option value="{ready.pk}" selected>', plain)


# ---------------------------------------------------------------- tasks browser


@pytest.fixture
def second_judge(judged, make_user):
    """bob agrees with alice on task 0 and disagrees on task 1; both tasks are complete."""
    bob = make_user("bob")
    for i, task in enumerate(judged[:2]):
        a, b = response_ids(task)
        judge(task, bob, [[a], [b]] if i == 0 else [[b], [a]], verdicts={"harmless": b})
    Task.objects.filter(pk__in=[t.pk for t in judged[:2]]).update(submitted_count=2)
    judged[0].project.annotations_per_task = 2
    judged[0].project.save(update_fields=["annotations_per_task"])
    return bob


def listed(client, project, **params) -> list[int]:
    page = client.get(reverse("staff-tasks", args=[project.slug]), params).content.decode()
    return [int(n) for n in re.findall(r'href="/tasks/(\d+)/"', page)]


@pytest.mark.django_db
def test_tasks_browser_filters(client, admin_user, project, judged, second_judge):
    client.force_login(admin_user)
    ids = [t.pk for t in judged]
    assert listed(client, project) == ids
    assert listed(client, project, status="complete") == ids[:2]
    assert listed(client, project, status="partial") == ids[2:]
    assert listed(client, project, status="open") == []
    assert listed(client, project, min_agreement="0.75") == [ids[0]]
    assert listed(client, project, max_agreement="0.6") == [ids[1]]
    assert listed(client, project, q="question 3") == [ids[3]]
    assert listed(client, project, flagged="yes") == []
    Judgment.objects.filter(task_id=ids[4]).update(flagged=True, flag_reason="spam")
    assert listed(client, project, flagged="yes") == [ids[4]]
    assert ids[4] not in listed(client, project, flagged="no")


@pytest.mark.django_db
def test_task_page_shows_responses_judgments_and_verdicts(
    client, admin_user, project, judged, second_judge
):
    task = judged[1]
    a = response_ids(task)[0]
    client.force_login(admin_user)
    page = client.get(reverse("staff-task", args=[task.pk])).content.decode()
    assert "Question 1?" in page and "Answer A1" in page and "Answer B1" in page
    assert f"response #{a}" in page and "model:a@1" in page  # staff see ids and sources
    assert page.count('data-testid="judgment"') == 2
    assert "alice" in page and "bob" in page
    assert "<code>harmless</code> Be harmless" in page and "decisive" in page
    assert "agreement 50.0%" in page


@pytest.mark.django_db
def test_flag_and_unflag_with_confirmation(client, make_user, judged):
    manager = make_user("manager-2", role="manager")
    judgment = Judgment.objects.get(task=judged[0])
    url = reverse("judgment-flag", args=[judgment.pk])
    client.force_login(manager)
    confirm = client.get(url).content.decode()
    assert f"Flag judgment #{judgment.pk}?" in confirm and 'method="post"' in confirm
    refused = client.post(url, {"flagged": "1", "reason": " "})
    assert refused.status_code == 200 and "a flag needs a reason" in refused.content.decode()
    judgment.refresh_from_db()
    assert not judgment.flagged
    done = client.post(url, {"flagged": "1", "reason": "copied the other answer"})
    assert done.status_code == 302
    assert done["Location"] == reverse("staff-task", args=[judged[0].pk])
    judgment.refresh_from_db()
    assert judgment.flagged and judgment.flagged_by == manager
    assert judgment.flag_reason == "copied the other answer"
    task_page = client.get(done["Location"]).content.decode()
    assert "Flagged by manager-2" in task_page and "Unflag…" in task_page
    assert f"Unflag judgment #{judgment.pk}?" in client.get(url).content.decode()
    client.post(url, {"flagged": "0"})
    judgment.refresh_from_db()
    assert not judgment.flagged and judgment.flag_reason == "" and judgment.flagged_by is None


# ---------------------------------------------------------------- bounded queries


@pytest.mark.django_db
def test_lists_run_a_bounded_number_of_queries(
    client, admin_user, make_user, project, alice, django_assert_max_num_queries
):
    bulk.create_tasks(
        project=project,
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"Q{i}"}],
                responses=[ResponseSpec(f"A{i}"), ResponseSpec(f"B{i}")],
            )
            for i in range(120)
        ],
    )
    bob = make_user("bob")
    for task in project.tasks.all():
        a, b = response_ids(task)
        judge(task, alice, [[a], [b]], verdicts={"harmless": a})
        judge(task, bob, [[b], [a]], verdicts={"harmless": b}, flagged=True)
    for i in range(60):
        DatasetSnapshot.objects.create(
            project=project,
            principle_set=project.principle_set,
            kind="preference",
            status="ready",
            row_count=i,
            sha256=f"{i:064x}",
            created_by=make_user(f"creator-{i}", role="manager") if i < 3 else admin_user,
        )
    client.force_login(admin_user)
    task = project.tasks.first()
    for url, params in (
        (reverse("snapshot-list", args=[project.slug]), {}),
        (reverse("snapshot-list", args=[project.slug]), {"page": "2"}),
        (reverse("staff-tasks", args=[project.slug]), {}),
        (reverse("staff-tasks", args=[project.slug]), {"flagged": "yes", "page": "2"}),
        (reverse("staff-tasks", args=[project.slug]), {"min_agreement": "0.1", "q": "Q1"}),
        (reverse("staff-task", args=[task.pk]), {}),
    ):
        with django_assert_max_num_queries(8):
            response = client.get(url, params)
        assert response.status_code == 200, url
