"""The workspace in real Chromium (Debian ``chromium`` driven by Python playwright).

Keyboard-only pairwise judgment, ranking with a tie (keys and drag and drop), a demonstration
edited from a response, a skip, and hostile markdown that must stay inert. Screenshots of
every page go to ``test-artifacts/screenshots/``.
"""

import os
import shutil
from pathlib import Path

import pytest

from annotation.models import Assignment, Demonstration, Judgment, Response, Task
from tests.support import REPO

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"
PASSWORD = "pw-for-tests-1"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    # Must-show tests: a missing browser fails them, it never skips them.
    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM} (scripts/test installs it)"
    from playwright import sync_api

    # playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # still synchronous, so Django's guard against ORM use inside a loop is lifted here only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Watch:
    """Dialogs, console errors and page errors seen by a page."""

    def __init__(self, page) -> None:
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.failed: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_clean(self) -> None:
        # The browser's own /favicon.ico probe (the site has none) is not an error of the page.
        failed = [f for f in self.failed if not f.endswith("/favicon.ico")]
        console = [
            m
            for m in self.console_errors
            if not (m.startswith("Failed to load resource") and not failed)
        ]
        assert self.dialogs == [] and self.page_errors == []
        assert console == [] and failed == []


@pytest.fixture
def page(browser, live_server, annotators):
    (user,) = annotators(1, prefix="browser")
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, base_url=live_server.url
    )
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    pg.watch = Watch(pg)
    pg.goto("/login/")
    pg.fill('input[name="username"]', user.username)
    pg.fill('input[name="password"]', PASSWORD)
    pg.keyboard.press("Enter")
    pg.wait_for_selector("text=Your annotation queue")
    pg.user = user
    yield pg
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def current_assignment(page) -> Assignment:
    pk = page.locator("form[data-ws]").get_attribute("data-assignment")
    return Assignment.objects.get(pk=int(pk))


def keys(page, *sequence: str) -> None:
    for key in sequence:
        page.keyboard.press(key)


def start_work(page, project) -> None:
    """Open the workspace and take a task by keyboard: a GET leases nothing, the focused start
    button POSTs (htmx swaps the task in)."""
    page.goto(f"/projects/{project.slug}/work/")
    page.wait_for_selector("[data-start] button:focus")
    keys(page, "Enter")


def test_keyboard_only_pairwise_judgment(page, make_project):
    project = make_project(tasks=2, guidelines="Prefer **safe** answers.")
    page.goto("/")
    shot(page, "01-home-queue")
    page.goto(f"/projects/{project.slug}/guidelines/")
    shot(page, "02-guidelines")
    start_work(page, project)
    page.wait_for_selector('form[data-kind="compare"]')
    page.evaluate("window.__sameDocument = true")
    assignment = current_assignment(page)
    a_id, b_id = assignment.display_order

    keys(page, "?")
    assert page.locator("#help").is_visible()
    shot(page, "03-help-overlay")
    keys(page, "Escape")
    assert not page.locator("#help").is_visible()

    # B is better, clearly; harmless favours B and decides; honest favours A; confidence 4
    keys(page, "2", "ArrowRight", "ArrowRight")
    keys(page, "j", "s", "d", "j", "a", "c", "c", "c", "c", "r")
    page.keyboard.type("B declines the harmful part and stays polite.")
    keys(page, "Escape")
    shot(page, "04-compare-filled")
    assert page.locator('input[name="choice"][value="1"]').is_checked()
    assert page.locator('input[name="strength"][value="2"]').is_checked()
    keys(page, "Enter")
    page.wait_for_selector("text=Saved.")
    page.wait_for_selector("form[data-ws]")
    assert page.evaluate("window.__sameDocument") is True  # htmx swap, no reload
    assert current_assignment(page).pk != assignment.pk
    shot(page, "05-next-task-after-submit")

    judgment = Judgment.objects.get(annotator=page.user)
    assert judgment.ordering == [[b_id], [a_id]] and judgment.strength == 2
    verdicts = {
        v.principle.key: (v.verdict, v.preferred_response_id) for v in judgment.verdicts.all()
    }
    assert verdicts == {
        "harmless": ("prefers", b_id),
        "honest": ("prefers", a_id),
        "helpful": ("not_applicable", None),
    }
    assert [p.key for p in judgment.decisive_principles.all()] == ["harmless"]
    assert judgment.confidence == 4 and judgment.rationale.startswith("B declines")
    assert judgment.time_spent_ms and judgment.time_spent_ms > 0
    assert judgment.idempotency_key

    page.goto(f"/projects/{project.slug}/history/")
    shot(page, "06-history")
    page.goto(f"/judgments/{judgment.pk}/")
    shot(page, "07-judgment-edit")
    page.watch.assert_clean()


def test_rank_four_responses_with_a_tie(page, make_project):
    project = make_project(tasks=1, responses=4)
    start_work(page, project)
    page.wait_for_selector('form[data-kind="rank"] .chip')
    ids = current_assignment(page).display_order
    # keys: pick B, move it up once → tied with A
    keys(page, "2", "ArrowUp")
    assert page.locator(".bucket.tied").count() == 1
    # drag and drop: D to the very top, ahead of everything
    page.locator('.chip[data-slot="3"]').drag_to(page.locator('.gap[data-gap="0"]'))
    buckets = page.locator(".bucket").all_inner_texts()
    assert len(buckets) == 3, buckets
    # principle panel: harmless's best response is D, decisive
    keys(page, "j", "4", "d", "Escape")
    shot(page, "08-rank-with-tie")
    keys(page, "Enter")
    page.wait_for_selector("text=Saved.")
    judgment = Judgment.objects.get(annotator=page.user)
    assert judgment.ordering == [[ids[3]], [ids[0], ids[1]], [ids[2]]]
    harmless = judgment.verdicts.get(principle__key="harmless")
    assert harmless.preferred_response_id == ids[3]
    assert [p.key for p in judgment.decisive_principles.all()] == ["harmless"]
    page.watch.assert_clean()


def test_demonstration_by_editing_a_response(page, make_project):
    project = make_project(tasks=1, responses=2, kind="demonstrate")
    start_work(page, project)
    page.wait_for_selector('form[data-kind="demonstrate"]')
    assignment = current_assignment(page)
    original = Response.objects.get(pk=assignment.display_order[0]).text
    keys(page, "1")  # start from response A: editor filled and focused
    assert page.locator("#demo-text").input_value() == original
    keys(page, "End")
    page.keyboard.type(" Also, suggest a safe alternative.")
    page.wait_for_selector("[data-diff] ins")
    assert "suggest a safe alternative" in page.locator("[data-diff] ins").first.inner_text()
    keys(page, "Escape", "j", "j", "c")  # cite "honest"
    shot(page, "09-demonstrate-diff")
    keys(page, "Control+Enter")
    page.wait_for_selector("text=Demonstration saved.")
    demo = Demonstration.objects.get(annotator=page.user)
    assert demo.text == original + " Also, suggest a safe alternative."
    assert demo.based_on_id == assignment.display_order[0]
    assert [p.key for p in demo.cited_principles.all()] == ["honest"]
    assert Assignment.objects.get(pk=assignment.pk).state == Assignment.State.SUBMITTED
    page.watch.assert_clean()


def test_skip_with_a_reason(page, make_project):
    project = make_project(tasks=2)
    start_work(page, project)
    page.wait_for_selector("form[data-ws]")
    assignment = current_assignment(page)
    keys(page, "x")
    page.wait_for_selector("#skip-dialog[open]")
    keys(page, "3")
    shot(page, "10-skip-dialog")
    keys(page, "Enter")
    page.wait_for_selector("text=Skipped.")
    assignment.refresh_from_db()
    assert assignment.state == Assignment.State.SKIPPED
    assert assignment.skip_reason.startswith("content:")
    assert current_assignment(page).pk != assignment.pk
    page.watch.assert_clean()


def test_hostile_markdown_renders_inert(page, make_project):
    project = make_project(tasks=1)
    task = Task.objects.get(project=project)
    first, second = task.responses.order_by("id")
    Response.objects.filter(pk=first.pk).update(
        text="Sure! <script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
        '[a link](javascript:alert(3)) and <a href="javascript:alert(4)">raw</a>'
    )
    Response.objects.filter(pk=second.pk).update(
        text="Here is `code` and a [safe link](https://example.org)."
    )
    start_work(page, project)
    page.wait_for_selector('form[data-kind="compare"]')
    page.wait_for_timeout(300)
    shot(page, "11-hostile-markdown")
    responses = page.locator(".response")
    assert responses.locator("script").count() == 0
    assert page.locator("img").count() == 0
    assert page.locator('[href^="javascript:" i]').count() == 0
    assert page.locator("[onerror]").count() == 0
    assert (
        "<script>alert(1)</script>" in responses.first.inner_text()
        or "<script>alert(1)</script>" in responses.last.inner_text()
    )
    assert page.locator('.response a[href="https://example.org"]').get_attribute("rel") == (
        "noopener noreferrer nofollow"
    )
    # clicking the would-be links does nothing either
    page.get_by_text("a link").click()
    page.wait_for_timeout(200)
    page.watch.assert_clean()
