"""Projects in the browser (create, settings, archive / reactivate, ``manage.py
create_project``) and a staff home whose counts tell the truth (issue 16, parts 1 and 5)."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation import tasks as annotation_tasks
from annotation.datasets import bulk
from annotation.datasets.importers.preferences import import_preferences
from annotation.models import Judgment, Project
from annotation.principles import services as principle_services
from annotation.projects import services as project_services
from annotation.specs import PrincipleSpec, PromptSpec, ResponseSpec
from annotation.workspace import judging, leasing

pytestmark = pytest.mark.django_db

ROLES = ("admin", "manager", "annotator", "viewer")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # PBKDF2 at production strength costs 0.5 s per test user; these tests need no such strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def users(make_user):
    return {role: make_user(f"{role}-1", role=role) for role in ROLES}


def form_data(principle_set, /, **changes):
    data = {
        "name": "Helpfulness vs harm",
        "slug": "help-harm",
        "principle_set": principle_set.pk,
        "description": "Pairs from the red-team set.",
        "guidelines": "Prefer the **safer** answer.",
        "task_kinds": ["compare", "rank"],
        "annotations_per_task": "3",
        "lease_seconds": "600",
        "edit_window_seconds": "300",
        "gold_ratio": "0.1",
        "both_bad_creates_demonstration": "on",
        "randomize_positions": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def urls(project):
    return {
        "new": reverse("project-new"),
        "settings": reverse("project-settings", args=[project.slug]),
        "archive": reverse("project-archive", args=[project.slug]),
        "reactivate": reverse("project-reactivate", args=[project.slug]),
    }


# ---------------------------------------------------------------- who may open what


@pytest.mark.parametrize("page", ["new", "settings", "archive", "reactivate"])
def test_role_matrix_on_every_project_page(client, users, project, page):
    url = urls(project)[page]
    reply = client.get(url)
    assert reply.status_code == 302 and reply["Location"].startswith(reverse("login"))
    for role, user in users.items():
        client.force_login(user)
        expected = 200 if role in ("admin", "manager") else 403
        assert client.get(url).status_code == expected, role
        if role in ("annotator", "viewer"):
            assert client.post(url, form_data(project.principle_set)).status_code == 403
    project.refresh_from_db()
    assert project.is_active and project.name == "Test project"  # the refused POSTs wrote nothing
    assert not Project.objects.filter(slug="help-harm").exists()


def test_an_unknown_project_is_404_and_a_wrong_method_405(client, users):
    client.force_login(users["manager"])
    for name in ("project-settings", "project-archive", "project-reactivate"):
        assert client.get(reverse(name, args=["no-such-project"])).status_code == 404
    assert client.put(reverse("project-new")).status_code == 405


# ---------------------------------------------------------------- create


def test_create_happy_path(client, users, principle_set):
    client.force_login(users["manager"])
    page = client.get(reverse("project-new")).content.decode()
    assert 'name="slug"' in page and f">{principle_set}</option>" in page
    assert f'hx-post="{reverse("project-new")}"' in page  # the preview button, with htmx
    reply = client.post(reverse("project-new"), form_data(principle_set))
    assert reply.status_code == 302
    assert reply["Location"] == reverse("project-settings", args=["help-harm"])
    project = Project.objects.get(slug="help-harm")
    assert project.principle_set == principle_set and project.created_by == users["manager"]
    assert project.task_kinds == ["compare", "rank"] and project.annotations_per_task == 3
    assert (project.lease_seconds, project.edit_window_seconds) == (600, 300)
    assert project.gold_ratio == 0.1 and project.both_bad_creates_demonstration
    assert project.is_active and project.counts_refreshed_at is not None
    settings_page = client.get(reply["Location"]).content.decode()
    assert "Project Helpfulness vs harm created." in settings_page
    assert 'data-testid="project-status">active' in settings_page
    assert f'data-testid="principle-set">{principle_set.label}' in settings_page


@pytest.fixture
def draft_set(db):
    return principle_services.create_principle_set(
        name="draft-principles", principles=[PrincipleSpec(key="k", title="K")]
    )


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"slug": "test-project"}, "slug", "Project with this Slug already exists."),
        ({"slug": "has space"}, "slug", "Enter a valid “slug”"),
        ({"name": ""}, "name", "This field is required."),
        ({"annotations_per_task": "0"}, "annotations_per_task", "greater than or equal to 1"),
        ({"annotations_per_task": "101"}, "annotations_per_task", "less than or equal to 100"),
        ({"lease_seconds": "0"}, "lease_seconds", "greater than or equal to 1"),
        ({"edit_window_seconds": "-1"}, "edit_window_seconds", "greater than or equal to 0"),
        ({"gold_ratio": "1.5"}, "gold_ratio", "less than or equal to 1"),
        ({"task_kinds": None}, "task_kinds", "This field is required."),
        ({"task_kinds": ["paint"]}, "task_kinds", "Select a valid choice"),
        ({"principle_set": "draft"}, "principle_set", "Select a valid choice"),
    ],
)
def test_create_shows_each_validation_error_inline(
    client, users, project, draft_set, changes, field, message
):
    if changes.get("principle_set") == "draft":
        changes = {"principle_set": draft_set.pk}  # a draft cannot pin judgments
    client.force_login(users["admin"])
    reply = client.post(reverse("project-new"), form_data(project.principle_set, **changes))
    assert reply.status_code == 200
    assert message in reply.context["form"].errors[field][0]
    assert message in reply.content.decode()
    assert 'class="errorlist' in reply.content.decode()
    assert Project.objects.count() == 1  # only the fixture's


def test_preview_renders_sanitized_guidelines_and_saves_nothing(client, users, principle_set):
    client.force_login(users["manager"])
    data = form_data(principle_set, guidelines="Be **kind**.\n\n<script>alert(1)</script>")
    reply = client.post(reverse("project-new"), {**data, "preview": "1"})
    html = reply.content.decode()
    assert reply.status_code == 200 and "<strong>kind</strong>" in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert not Project.objects.filter(slug="help-harm").exists()


# ---------------------------------------------------------------- edit, archive, reactivate


def test_edit_settings(client, users, project):
    client.force_login(users["admin"])
    page = client.get(reverse("project-settings", args=[project.slug])).content.decode()
    assert 'value="Test project"' in page and 'name="slug"' not in page
    data = form_data(project.principle_set, name="Renamed", annotations_per_task="2")
    data["slug"] = "hijacked"  # not a settings field: ignored
    reply = client.post(reverse("project-settings", args=[project.slug]), data)
    assert reply.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.annotations_per_task, project.slug) == (
        "Renamed",
        2,
        "test-project",
    )
    assert project.task_kinds == ["compare", "rank"] and project.guidelines.startswith("Prefer")
    refused = client.post(
        reverse("project-settings", args=[project.slug]),
        form_data(project.principle_set, name="Again", annotations_per_task="0"),
    )
    assert refused.status_code == 200 and "greater than or equal to 1" in refused.content.decode()
    assert "<h1>Renamed · settings</h1>" in refused.content.decode()  # the saved name
    project.refresh_from_db()
    assert (project.name, project.annotations_per_task) == ("Renamed", 2)


def test_archive_then_reactivate(client, users, project, compare_tasks):
    annotator = users["annotator"]
    lease = leasing.next_task(annotator=annotator, project=project)
    client.force_login(users["manager"])
    confirm = client.get(reverse("project-archive", args=[project.slug])).content.decode()
    assert "csrfmiddlewaretoken" in confirm and 'method="post"' in confirm
    project.refresh_from_db()
    assert project.is_active  # the confirmation page changed nothing
    reply = client.post(reverse("project-archive", args=[project.slug]), follow=True)
    assert 'data-testid="project-status">archived' in reply.content.decode()
    project.refresh_from_db()
    assert not project.is_active
    home = client.get(reverse("home")).content.decode()
    assert "(archived)" in home  # staff still see it, to reactivate it

    client.force_login(annotator)
    assert client.get(reverse("workspace", args=[project.slug])).status_code == 404
    assert client.post(reverse("workspace", args=[project.slug])).status_code == 404
    refused = client.post(
        reverse("workspace-submit", args=[lease.pk]), {"idempotency_key": "k1", "choice": "0"}
    )
    assert refused.status_code == 409 and not Judgment.objects.exists()
    assert project.slug not in client.get(reverse("home")).content.decode()

    client.force_login(users["admin"])
    assert client.post(reverse("project-reactivate", args=[project.slug])).status_code == 302
    project.refresh_from_db()
    assert project.is_active
    client.force_login(annotator)
    assert client.get(reverse("workspace", args=[project.slug])).status_code == 200
    judging.submit_judgment(assignment=lease, annotator=annotator, ordering=[lease.display_order])
    assert Judgment.objects.count() == 1


# ---------------------------------------------------------------- manage.py create_project


def test_create_project_command(principle_set, tmp_path, capsys):
    guide = tmp_path / "guide.md"
    guide.write_text("# Read me\n")
    call_command(
        "create_project", "--name", "Scripted", "--slug", "scripted",
        "--principle-set", f"{principle_set.name}@{principle_set.version}",
        "--overlap", "3", "--task-kinds", "compare,rank", "--gold-ratio", "0.2",
        "--lease-seconds", "120", "--both-bad-demonstration", "--guidelines-file", str(guide),
    )  # fmt: skip
    assert "created project scripted" in capsys.readouterr().out
    project = Project.objects.get(slug="scripted")
    settings = (project.annotations_per_task, project.gold_ratio, project.lease_seconds)
    assert settings == (3, 0.2, 120)
    assert project.task_kinds == ["compare", "rank"] and project.both_bad_creates_demonstration
    assert project.guidelines == "# Read me" and project.principle_set == principle_set
    # the only published set is the default
    call_command("create_project", "--name", "Default", "--slug", "default-set")
    assert Project.objects.get(slug="default-set").principle_set == principle_set


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slug", "scripted", "--overlap", "0"], "annotations_per_task"),
        (["--slug", "taken"], "slug: Project with this Slug already exists."),
        (["--slug", "x", "--task-kinds", "paint"], "task_kinds"),
        (["--slug", "x", "--principle-set", "nope@1"], "no published principle set 'nope@1'"),
        (["--slug", "x", "--principle-set", "test-principles@one"], "is a number"),
    ],
)
def test_create_project_command_refuses_bad_input(principle_set, args, message):
    project_services.create_project(
        name="T", slug="taken", principle_set=principle_set, task_kinds=["compare"]
    )
    with pytest.raises(CommandError, match=message):
        call_command("create_project", "--name", "Scripted", *args)
    assert Project.objects.count() == 1


# ---------------------------------------------------------------- staff home: true counts


def test_staff_home_counts_imported_judgments_after_an_import(
    client, users, project, tmp_path, django_capture_on_commit_callbacks
):
    records = [
        {"prompt": f"Question {i}?", "chosen": f"good {i}", "rejected": f"bad {i}"}
        for i in range(7)
    ]
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    Project.objects.filter(pk=project.pk).update(counts_refreshed_at=None)  # as before the fix
    with django_capture_on_commit_callbacks(execute=True):
        result = import_preferences(project=project, path=path, fmt="trl", annotator="ultrafb")
    assert result.judgments == 7
    client.force_login(users["manager"])
    home = client.get(reverse("home")).content.decode()
    row = home[home.index(f'data-project="{project.slug}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-count="tasks">7<' in row and 'data-count="judgments">7<' in row
    assert 'data-count="imported">7<' in row and 'data-count="human">0<' in row
    assert 'data-count="model">0<' in row
    assert "never" not in home and " ago</time>" in row
    pages = ("project-settings", "import-upload", "snapshot-list", "quality:project")
    for url in (*pages, "quality:discretion"):
        assert reverse(url, args=[project.slug]) in row


def test_judgments_by_people_and_models_are_recounted_by_the_metrics_refresh(
    users, project, compare_tasks
):
    annotator = users["annotator"]
    for _ in range(2):
        lease = leasing.next_task(annotator=annotator, project=project)
        judging.submit_judgment(
            assignment=lease, annotator=annotator, ordering=[lease.display_order]
        )
    model = project_services.get_or_create_model_annotator(name="rm-1", model_ref="model:rm@1")
    Judgment.objects.create(
        task=compare_tasks[5], annotator=model, ordering=[[1], [2]], origin="model:rm@1"
    )
    annotation_tasks.refresh_metrics(project.pk)  # what judgment events queue (debounced)
    project.refresh_from_db()
    counts = (
        project.judgment_count,
        project.human_judgment_count,
        project.model_judgment_count,
        project.imported_judgment_count,
    )
    assert counts == (3, 2, 1, 0) and project.task_count == 10


def test_staff_home_is_paginated_searchable_and_bounded_in_queries(
    client, users, principle_set, django_assert_max_num_queries
):
    for i in range(60):
        project_services.create_project(
            name=f"Project {i:02}", slug=f"p-{i:02}", principle_set=principle_set,
            task_kinds=["compare"],
        )  # fmt: skip
    bulk.create_tasks(
        project=Project.objects.get(slug="p-00"),
        specs=[
            PromptSpec(
                messages=[{"role": "user", "content": f"q{i}"}],
                responses=[ResponseSpec(f"a{i}", "x"), ResponseSpec(f"b{i}", "y")],
            )
            for i in range(10_000)
        ],
    )
    project_services.recount_project(project_id=Project.objects.get(slug="p-00").pk)
    client.force_login(users["admin"])
    client.get(reverse("home"))  # warm the per-process caches (role, session)
    with django_assert_max_num_queries(6):
        first = client.get(reverse("home")).content.decode()
    assert first.count("data-project=") == 50 and "page 1 of 2" in first
    assert 'data-count="tasks">10000<' in first
    second = client.get(reverse("home") + "?page=2").content.decode()
    assert second.count("data-project=") == 10
    found = client.get(reverse("home") + "?q=project 07").content.decode()
    assert found.count("data-project=") == 1 and 'data-project="p-07"' in found
    assert "No project matches" in client.get(reverse("home") + "?q=zzz").content.decode()
