"""Principle sets in the browser: list, create by rows or by pasting (YAML, one per line, Model
Spec markdown), edit a draft, publish (then frozen), fork, the diff of two versions; admins and
managers only."""

import os
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from annotation.models import PrincipleSet
from annotation.principles import services
from annotation.projects import services as project_services
from annotation.specs import PrincipleSpec
from tests.conftest import SHARED_DATA

MODEL_SPEC = SHARED_DATA / "openai-model-spec" / "model_spec_2025-12-18.md"
MODEL_SPEC_EXCERPT = """\
# Stay in bounds {#stay_in_bounds}

Intro text that belongs to no principle.

## Comply with applicable laws {#comply_with_laws authority=system}

The assistant should not engage in illegal activity.

## Do not generate disallowed content {#disallowed_content}

### Never generate sexual content involving minors {#minors authority=root}

Sexual content involving minors is prohibited.

```
## Not a heading {#inside_a_fence authority=root}
```

## Be clear and direct {#be_clear authority=guideline}

Answers come first.
"""


def rows(*principles: dict, prefix: str = "form", initial: int = 0) -> dict:
    """POST data of the row formset."""
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(principles)),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for i, principle in enumerate(principles):
        row = {"authority": "user", "kind": "", "title": "", "text": "", "section": "",
               "declared_priority": "", **principle}  # fmt: skip
        data.update({f"{prefix}-{i}-{name}": value for name, value in row.items()})
    return data


def draft(name: str = "charter", *specs: PrincipleSpec) -> PrincipleSet:
    return services.create_principle_set(
        name=name,
        principles=specs
        or [
            PrincipleSpec(key="safe", title="Be safe", text="No harm.", authority="root"),
            PrincipleSpec(key="kind", title="Be kind", text="Be nice."),
        ],
    )


def keys(principle_set: PrincipleSet) -> list[str]:
    return list(principle_set.principles.order_by("position").values_list("key", flat=True))


@pytest.fixture
def manager(client, make_user):
    client.force_login(make_user("principles-manager", role="manager"))
    return client


# ---------------------------------------------------------------- who may see the pages


def urls(version: PrincipleSet) -> list[tuple[str, str]]:
    pk = version.pk
    return [
        ("get", reverse("principles")),
        ("get", reverse("principle-set-new")),
        ("get", reverse("principle-set-paste")),
        ("get", reverse("principle-set", args=[pk])),
        ("get", reverse("principle-set-edit", args=[pk])),
        ("get", reverse("principle-set-publish", args=[pk])),
        ("post", reverse("principle-set-fork", args=[pk])),
        ("get", reverse("principle-set-diff", args=[pk])),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", {200, 302}), ("manager", {200, 302}), ("annotator", {403}), ("viewer", {403})],
)
def test_role_matrix_on_every_page(client, make_user, role, expected):
    version = draft()
    client.force_login(make_user(f"u-{role}", role=role))
    for method, url in urls(version):
        response = getattr(client, method)(url)
        assert response.status_code in expected, (role, method, url, response.status_code)
        if method == "get" and role in {"admin", "manager"}:
            assert response.status_code == 200, url
    if role in {"annotator", "viewer"}:
        post = client.post(reverse("principle-set-publish", args=[version.pk]))
        assert post.status_code == 403
        assert PrincipleSet.objects.get(pk=version.pk).status == "draft"
        valid = {"name": "sneaky", "save": "1"} | rows({"key": "k", "title": "K", "text": "T"})
        assert client.post(reverse("principle-set-new"), valid).status_code == 403
        pasted = {"format": "lines", "text": "Be kind.", "name": "sneaky", "save": "1"}
        assert client.post(reverse("principle-set-paste"), pasted).status_code == 403
        edited = {"description": "", "save": "1"} | rows({"key": "k", "title": "K", "text": "T"})
        assert (
            client.post(reverse("principle-set-edit", args=[version.pk]), edited).status_code == 403
        )
        assert PrincipleSet.objects.count() == 1  # no fork, no new set
        assert keys(version) == ["safe", "kind"]


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client):
    version = draft()
    for method, url in urls(version):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and "login" in response["Location"], url
    assert PrincipleSet.objects.count() == 1


@pytest.mark.django_db
def test_fork_refuses_get(manager):
    version = draft()
    assert manager.get(reverse("principle-set-fork", args=[version.pk])).status_code == 405


# ---------------------------------------------------------------- create by rows


@pytest.mark.django_db
def test_create_by_rows_saves_a_draft_in_row_order(manager):
    data = {"name": "house-rules", "description": "Ours.", "save": "1"}
    data |= rows(
        {"key": "no-harm", "title": "Do no harm", "text": "Never help hurt.", "authority": "root"},
        {
            "key": "direct",
            "text": "Answer first, explain after.",
            "authority": "guideline",
            "declared_priority": "7",
            "section": "Style",
        },
        {},  # a blank extra row is left out
    )
    response = manager.post(reverse("principle-set-new"), data)
    created = PrincipleSet.objects.get(name="house-rules")
    assert response.status_code == 302
    assert response["Location"] == reverse("principle-set", args=[created.pk])
    assert (created.version, created.status, created.description) == (1, "draft", "Ours.")
    no_harm, direct = created.principles.order_by("position")
    assert (no_harm.key, no_harm.kind, no_harm.declared_priority) == ("no-harm", "rule", 0)
    assert (direct.title, direct.kind, direct.declared_priority, direct.section) == (
        "Answer first, explain after.",
        "guideline",
        7,
        "Style",
    )
    page = manager.get(response["Location"]).content.decode()
    assert "Do no harm" in page and "Draft house-rules@1 saved." in page


@pytest.mark.django_db
def test_rows_with_duplicate_keys_or_empty_text_are_refused_inline(manager):
    data = {"name": "broken", "save": "1"}
    data |= rows(
        {"key": "same", "title": "One", "text": "First."},
        {"key": "same", "title": "Two", "text": "Second."},
        {"key": "empty", "title": "No text", "text": ""},
        {"key": "bad key!", "text": "x"},
    )
    response = manager.post(reverse("principle-set-new"), data)
    page = response.content.decode()
    assert response.status_code == 200 and not PrincipleSet.objects.exists()
    assert "This field is required." in page  # the empty text, on its row
    assert "Enter a valid “slug”" in page
    # duplicates are checked once every row is valid
    data |= rows(
        {"key": "same", "title": "One", "text": "First."},
        {"key": "same", "title": "Two", "text": "Second."},
    )
    page = manager.post(reverse("principle-set-new"), data).content.decode()
    assert page.count("Duplicate key &#x27;same&#x27;") == 2 and not PrincipleSet.objects.exists()
    empty = manager.post(reverse("principle-set-new"), {"name": "none", "save": "1", **rows({})})
    assert "Add at least one principle." in empty.content.decode()


@pytest.mark.django_db
def test_add_a_row_keeps_what_was_typed_and_shows_no_errors(manager):
    data = {"name": "growing", "add_row": "1"} | rows({"key": "a", "title": "A", "text": ""})
    page = manager.post(reverse("principle-set-new"), data).content.decode()
    assert 'name="form-1-key"' in page and 'name="form-2-key"' not in page
    assert 'value="a"' in page and "This field is required." not in page
    assert not PrincipleSet.objects.exists()
    form = manager.get(reverse("principle-set-new")).content.decode()
    assert "data-add-row" in form and "form-__prefix__-key" in form  # the JS row template


@pytest.mark.django_db
def test_an_existing_name_makes_the_next_version(manager):
    first = draft("charter")
    data = {"name": "charter", "save": "1"} | rows({"key": "k", "title": "K", "text": "T"})
    manager.post(reverse("principle-set-new"), data)
    second = PrincipleSet.objects.get(name="charter", version=2)
    assert second.parent_id == first.pk


# ---------------------------------------------------------------- create by pasting


@pytest.mark.django_db
def test_paste_yaml_previews_then_saves_a_draft(manager):
    text = (
        "name: pasted-yaml\n"
        "description: From YAML.\n"
        "principles:\n"
        "  - key: safe\n    title: Be safe\n    text: No harm.\n    authority: root\n"
        "  - key: kind\n    title: Be kind\n    priority: 9\n"
    )
    data = {"format": "yaml", "text": text, "name": "", "description": ""}
    preview = manager.post(reverse("principle-set-paste"), {**data, "preview": "1"})
    page = preview.content.decode()
    assert preview.status_code == 200 and "data-preview" in page
    assert "2 principles" in page and "Be safe" in page and 'name="save"' in page
    assert not PrincipleSet.objects.exists()
    saved = manager.post(reverse("principle-set-paste"), {**data, "save": "1"})
    created = PrincipleSet.objects.get()
    assert saved["Location"] == reverse("principle-set", args=[created.pk])
    assert (created.name, created.description, created.status) == (
        "pasted-yaml",
        "From YAML.",
        "draft",
    )
    assert created.source == "pasted (yaml)"
    assert list(created.principles.values_list("key", "authority", "declared_priority")) == [
        ("safe", "root", 0),
        ("kind", "user", 9),
    ]


@pytest.mark.django_db
def test_bad_yaml_is_refused_naming_its_line(manager):
    text = "- key: a\n  title: A\n- key: b\n  title: [unclosed\n"
    response = manager.post(
        reverse("principle-set-paste"),
        {"format": "yaml", "text": text, "name": "x", "preview": "1"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and "line 4: invalid YAML" in page
    assert "/tmp" not in page and not PrincipleSet.objects.exists()
    duplicated = "- {key: a, title: A}\n- {key: a, title: B}\n"
    page = manager.post(
        reverse("principle-set-paste"),
        {"format": "yaml", "text": duplicated, "name": "x", "save": "1"},
    ).content.decode()
    assert "duplicate keys: a" in page and not PrincipleSet.objects.exists()
    nameless = manager.post(
        reverse("principle-set-paste"), {"format": "lines", "text": "Be kind.", "save": "1"}
    ).content.decode()
    assert "Name the set" in nameless and not PrincipleSet.objects.exists()


@pytest.mark.django_db
def test_paste_one_per_line(manager):
    text = "Be safe.\r\n\r\nBe honest.\r\nBe helpful.\r\n"
    response = manager.post(
        reverse("principle-set-paste"),
        {"format": "lines", "text": text, "name": "three-lines", "save": "1"},
    )
    assert response.status_code == 302
    created = PrincipleSet.objects.get(name="three-lines")
    assert list(created.principles.values_list("key", "text")) == [
        ("p00", "Be safe."),
        ("p01", "Be honest."),
        ("p02", "Be helpful."),
    ]


@pytest.mark.django_db
def test_paste_model_spec_markdown(manager):
    data = {"format": "model-spec", "text": MODEL_SPEC_EXCERPT, "name": "spec-excerpt"}
    page = manager.post(reverse("principle-set-paste"), {**data, "preview": "1"}).content.decode()
    assert "3 principles" in page and "<code>inside_a_fence</code>" not in page
    manager.post(reverse("principle-set-paste"), {**data, "save": "1"})
    created = PrincipleSet.objects.get(name="spec-excerpt")
    laws, minors, clear = created.principles.order_by("position")
    assert (laws.key, laws.authority, laws.kind, laws.section) == (
        "comply_with_laws", "system", "rule", "Stay in bounds",
    )  # fmt: skip
    assert minors.section == "Do not generate disallowed content" and minors.authority == "root"
    assert (clear.key, clear.kind, clear.text) == ("be_clear", "guideline", "Answers come first.")
    untagged = manager.post(
        reverse("principle-set-paste"),
        {"format": "model-spec", "text": "# Just a title\n\nNo tags.", "name": "x", "save": "1"},
    )
    assert "no &#x27;{#id authority=…}&#x27; headings found" in untagged.content.decode()


@pytest.mark.skipif(not MODEL_SPEC.is_file(), reason="../shared/data is absent")
@pytest.mark.django_db
def test_paste_a_piece_of_the_real_model_spec(manager):
    """The chain-of-command section of the 2025-12-18 release, as a user would paste it."""
    piece = "".join(MODEL_SPEC.read_text(encoding="utf-8").splitlines(keepends=True)[170:460])
    response = manager.post(
        reverse("principle-set-paste"),
        {"format": "model-spec", "text": piece, "name": "", "save": "1"},
    )
    assert "Name the set" in response.content.decode()
    manager.post(
        reverse("principle-set-paste"),
        {"format": "model-spec", "text": piece, "name": "openai-model-spec", "save": "1"},
    )
    created = PrincipleSet.objects.get(name="openai-model-spec")
    assert keys(created) == [
        "follow_all_applicable_instructions",
        "letter_and_spirit",
        "no_other_objectives",
    ]
    assert set(created.principles.values_list("authority", flat=True)) == {"root"}
    assert set(created.principles.values_list("section", flat=True)) == {"The chain of command"}


# ---------------------------------------------------------------- edit, publish, fork


@pytest.mark.django_db
def test_edit_a_draft_updates_adds_removes_and_reorders_by_key(manager):
    version = draft()
    safe_id = version.principles.get(key="safe").pk
    page = manager.get(reverse("principle-set-edit", args=[version.pk])).content.decode()
    assert 'value="safe"' in page and "No harm." in page
    data = {"description": "Edited.", "save": "1"} | rows(
        {"key": "new", "title": "New", "text": "Added in the edit."},
        {"key": "safe", "title": "Be safe", "text": "Do no harm at all.", "authority": "root"},
        {"key": "kind", "title": "Be kind", "text": "Be nice.", "DELETE": "on"},
        initial=2,
    )
    response = manager.post(reverse("principle-set-edit", args=[version.pk]), data)
    assert response.status_code == 302
    version.refresh_from_db()
    assert keys(version) == ["new", "safe"] and version.description == "Edited."
    safe = version.principles.get(key="safe")
    assert safe.pk == safe_id and safe.text == "Do no harm at all." and safe.position == 1


@pytest.mark.django_db
def test_edit_refuses_duplicate_keys_inline(manager):
    version = draft()
    data = {"description": "", "save": "1"} | rows(
        {"key": "safe", "title": "A", "text": "a"},
        {"key": "safe", "title": "B", "text": "b"},
        initial=2,
    )
    page = manager.post(reverse("principle-set-edit", args=[version.pk]), data).content.decode()
    assert "Duplicate key" in page and keys(version) == ["safe", "kind"]


@pytest.mark.django_db
def test_publish_asks_then_freezes_and_edits_are_refused(manager):
    version = draft()
    confirm = manager.get(reverse("principle-set-publish", args=[version.pk])).content.decode()
    assert "frozen" in confirm and 'method="post"' in confirm
    assert PrincipleSet.objects.get(pk=version.pk).status == "draft"  # GET changes nothing
    response = manager.post(reverse("principle-set-publish", args=[version.pk]), follow=True)
    version.refresh_from_db()
    assert version.status == "published" and version.published_at is not None
    assert "published: it is frozen now" in response.content.decode()
    page = manager.get(reverse("principle-set", args=[version.pk])).content.decode()
    assert "Fork to the next version" in page and "Edit draft" not in page
    refused = manager.post(
        reverse("principle-set-edit", args=[version.pk]),
        {"description": "", "save": "1"} | rows({"key": "safe", "title": "X", "text": "Changed"}),
        follow=True,
    )
    assert "published and frozen" in refused.content.decode()
    assert keys(version) == ["safe", "kind"]
    assert version.principles.get(key="safe").text == "No harm."
    again = manager.post(reverse("principle-set-publish", args=[version.pk]), follow=True)
    assert "immutable" in again.content.decode()


@pytest.mark.django_db
def test_publishing_an_empty_draft_is_refused(manager):
    version = draft()
    version.principles.all().delete()
    response = manager.post(reverse("principle-set-publish", args=[version.pk]), follow=True)
    assert "needs at least one principle" in response.content.decode()
    assert PrincipleSet.objects.get(pk=version.pk).status == "draft"


@pytest.mark.django_db
def test_fork_makes_the_next_draft_version(manager):
    version = draft()
    services.publish_principle_set(principle_set=version)
    response = manager.post(reverse("principle-set-fork", args=[version.pk]))
    fork = PrincipleSet.objects.get(name="charter", version=2)
    assert response["Location"] == reverse("principle-set", args=[fork.pk])
    assert (fork.status, fork.parent_id) == ("draft", version.pk)
    assert keys(fork) == ["safe", "kind"]
    page = manager.get(response["Location"]).content.decode()
    assert "Edit draft" in page and "forked from" in page


# ---------------------------------------------------------------- diff


@pytest.mark.django_db
def test_diff_shows_each_change_category(manager):
    base = draft(
        "charter",
        PrincipleSpec(key="safe", title="Be safe", text="No harm.", authority="root"),
        PrincipleSpec(key="kind", title="Be kind", text="Be nice."),
        PrincipleSpec(key="old", title="Gone soon", text="Dropped in v2."),
        PrincipleSpec(key="tone", title="Tone", text="Warm.", authority="guideline"),
    )
    services.publish_principle_set(principle_set=base)
    other = services.fork_principle_set(principle_set=base)
    services.edit_principle_set(
        principle_set=other,
        principles=[
            PrincipleSpec(key="kind", title="Be kind", text="Be nice, always."),  # reworded
            PrincipleSpec(key="safe", title="Be safe", text="No harm.", authority="platform"),
            PrincipleSpec(
                key="tone", title="Tone", text="Warm.", authority="guideline", declared_priority=9
            ),
            PrincipleSpec(key="fresh", title="Brand new", text="Added in v2."),
        ],
    )
    url = reverse("principle-set-diff", args=[other.pk])
    page = manager.get(url).content.decode()  # default: against the parent
    assert "charter@1 → charter@2" in page
    section = {name: page.split(f'data-section="{name}"')[1].split("</div>")[0]
               for name in ("added", "removed", "reworded", "retiered", "moved")}  # fmt: skip
    assert "fresh" in section["added"] and "Brand new" in section["added"]
    assert "old" in section["removed"] and "Gone soon" in section["removed"]
    assert "<del>Be nice.</del>" in section["reworded"]
    assert "<ins>Be nice, always.</ins>" in section["reworded"]
    assert "safe" not in section["reworded"]
    assert "<del>root</del>" in section["retiered"] and "<ins>platform</ins>" in section["retiered"]
    assert "<del>4</del>" in section["retiered"] and "<ins>9</ins>" in section["retiered"]
    assert "<code>kind</code>" not in section["retiered"]
    assert "safe" in section["moved"] and "1 → 2" in section["moved"]
    # reversed, chosen in the form
    back = manager.get(url, {"base": other.pk, "other": base.pk}).content.decode()
    assert "charter@2 → charter@1" in back and "Gone soon" in back.split('data-section="added"')[1]
    same = manager.get(url, {"base": base.pk, "other": base.pk}).content.decode()
    assert "No differences" in same


@pytest.mark.django_db
def test_diff_refuses_a_version_of_another_set(manager):
    version = draft("charter")
    stranger = draft("other-set")
    page = manager.get(
        reverse("principle-set-diff", args=[version.pk]),
        {"base": stranger.pk, "other": version.pk},
    ).content.decode()
    assert "Select a valid choice" in page and 'data-section="added"' not in page


@pytest.mark.django_db
def test_api_diff_is_the_same_implementation(manager):
    base = draft()
    services.publish_principle_set(principle_set=base)
    other = services.fork_principle_set(principle_set=base)
    services.edit_principle_set(
        principle_set=other,
        principles=[PrincipleSpec(key="safe", title="Be safe", text="No harm.", authority="user")],
    )
    body = manager.get(f"/api/v1/principle-sets/{other.pk}/diff/").json()
    assert body == {
        "base": "charter@1",
        "other": "charter@2",
        "added": [],
        "removed": ["kind"],
        "changed": [
            {"key": "safe", "fields": {"authority": ["root", "user"], "declared_priority": [0, 3]}}
        ],
    }


# ---------------------------------------------------------------- list and project links


@pytest.mark.django_db
def test_list_of_50_sets_has_a_bounded_query_count(
    manager, django_assert_max_num_queries, principle_set
):
    project_services.create_project(
        name="Pinned", slug="pinned", principle_set=principle_set, task_kinds=["compare"]
    )
    for i in range(50):
        first = services.publish_principle_set(principle_set=draft(f"set-{i:02d}"))
        services.fork_principle_set(principle_set=first)
        project_services.create_project(
            name=f"Project {i}", slug=f"project-{i}", principle_set=first, task_kinds=["compare"]
        )
    with django_assert_max_num_queries(8):
        response = manager.get(reverse("principles"))
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count("set-") >= 49 and "page 1 of 2" in page  # 51 sets, 50 a page
    assert "Project 0" in page and ">v2<" in page
    assert "set-49" in page and "test-principles" not in page
    second = manager.get(reverse("principles"), {"page": 2}).content.decode()
    assert "test-principles" in second and "Pinned" in second and "set-49" not in second
    found = manager.get(reverse("principles"), {"q": "SET-07"}).content.decode()
    assert "set-07" in found and "set-08" not in found and "Project 7" in found


@pytest.mark.django_db
def test_version_page_lists_principles_and_pinned_projects(
    manager, project, django_assert_max_num_queries
):
    url = reverse("principle-set", args=[project.principle_set_id])
    with django_assert_max_num_queries(8):
        page = manager.get(url).content.decode()
    assert "Be harmless" in page and "Test project" in page and "Published" in page


@pytest.mark.django_db
def test_quality_pages_link_a_project_to_its_principle_set_version(manager, project):
    link = f'href="{reverse("principle-set", args=[project.principle_set_id])}"'
    index = manager.get(reverse("quality:index")).content.decode()
    assert link in index and f'href="{reverse("principles")}"' in index
    assert link in manager.get(reverse("quality:project", args=[project.slug])).content.decode()


# ---------------------------------------------------------------- in Chromium


CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
@pytest.mark.django_db(transaction=True)
def test_add_a_row_in_the_browser_then_save(live_server, make_user, monkeypatch):
    """ "Add a row" clones a row in the page (no request, no CSP violation); the draft saves."""
    from playwright.sync_api import sync_playwright

    make_user("browser-manager", role="manager", password="pw-for-tests-1")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(base_url=live_server.url)
        page.set_default_timeout(10_000)
        violations: list[str] = []
        page.on(
            "console", lambda m: "Content Security Policy" in m.text and violations.append(m.text)
        )
        page.goto("/login/")
        page.fill("input[name=username]", "browser-manager")
        page.fill("input[name=password]", "pw-for-tests-1")
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        page.goto(reverse("principle-set-new"))
        page.fill("input[name=name]", "typed-in-chromium")
        page.press("input[name=name]", "Enter")  # Enter saves (the first button): no row yet
        assert page.get_by_text("Add at least one principle.").is_visible()
        assert page.locator("[data-rows] tr").count() == 3
        page.fill("input[name=form-0-key]", "first")
        page.fill("textarea[name=form-0-text]", "The first principle.")
        for _ in range(2):
            page.click("[data-add-row]")
        assert page.locator("[data-rows] tr").count() == 5
        assert page.input_value("input[name=form-TOTAL_FORMS]") == "5"
        assert page.evaluate("document.activeElement.name") == "form-4-key"
        page.fill("input[name=form-4-key]", "added")
        page.fill("textarea[name=form-4-text]", "Added with the button.")
        page.select_option("select[name=form-4-authority]", "root")
        page.click("button[name=save]")
        page.wait_for_url("**/principles/*/")
        browser.close()
    assert violations == []
    created = PrincipleSet.objects.get(name="typed-in-chromium")
    assert list(created.principles.values_list("key", "authority")) == [
        ("first", "user"),
        ("added", "root"),
    ]
