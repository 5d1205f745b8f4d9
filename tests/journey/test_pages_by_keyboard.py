"""The project and dataset pages in real Chromium, by keyboard only: every action is reached with
Tab and shows a focus ring, and what cannot be undone at a click (archive, flag) asks first,
with the focus on the confirming button (or the field it needs) and a way back that changes
nothing."""

import pytest

from annotation.models import Judgment, Project
from tests.data_io.conftest import judge, response_ids
from tests.journey.browser import keys

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def tab_to(page, name: str, limit: int = 60) -> None:
    """Press Tab until the focused element's text is ``name``; fail if it is never reached."""
    for _ in range(limit):
        keys(page, "Tab")
        if page.evaluate("() => document.activeElement.innerText.trim()") == name:
            assert_focus_ring(page)
            return
    raise AssertionError(f"{name!r} is not reachable with Tab")


def assert_focus_ring(page, name: str | None = None) -> None:
    """The focused element (named ``name`` if given: autofocus may land just after the load)
    is keyboard-focused and visibly so."""
    if name is not None:
        page.wait_for_function("name => document.activeElement.innerText.trim() === name", arg=name)
    focused = page.evaluate(
        """() => { const e = document.activeElement; return {
            text: e.innerText.trim(), visible: e.matches(':focus-visible'),
            outline: getComputedStyle(e).outlineStyle } }"""
    )
    if name is not None:
        assert focused["text"] == name, focused
    assert focused["visible"] and focused["outline"] != "none", focused


def test_archive_asks_first_and_is_undone_by_keyboard(open_as, admin_user, project):
    page = open_as(admin_user, f"/projects/{project.slug}/settings/")
    status = page.get_by_test_id("project-status")

    tab_to(page, "Archive…")
    keys(page, "Enter")
    page.wait_for_url("**/archive/")
    assert_focus_ring(page, "Archive the project")
    assert Project.objects.get(pk=project.pk).is_active  # asking changed nothing
    keys(page, "Tab")
    assert_focus_ring(page, "Cancel")
    keys(page, "Enter")
    page.wait_for_url("**/settings/")
    assert status.inner_text() == "active"

    tab_to(page, "Archive…")
    keys(page, "Enter")
    page.wait_for_url("**/archive/")
    assert_focus_ring(page, "Archive the project")
    keys(page, "Enter")
    page.wait_for_url("**/settings/")
    assert status.inner_text() == "archived"
    assert not Project.objects.get(pk=project.pk).is_active

    tab_to(page, "Reactivate…")
    keys(page, "Enter")
    page.wait_for_url("**/reactivate/")
    assert_focus_ring(page, "Reactivate the project")
    keys(page, "Enter")
    page.wait_for_url("**/settings/")
    assert status.inner_text() == "active"
    page.watch.assert_clean()


def test_snapshot_and_flag_by_keyboard(open_as, admin_user, annotator, compare_tasks):
    task = compare_tasks[0]
    a, b = response_ids(task)
    judgment = judge(task, annotator, [[a], [b]], verdicts={"harmless": a})
    project = task.project
    page = open_as(admin_user, f"/projects/{project.slug}/datasets/")

    tab_to(page, "New snapshot")
    keys(page, "Enter")
    page.wait_for_url("**/datasets/new/")
    tab_to(page, "Create snapshot")
    keys(page, "Enter")
    page.get_by_test_id("snapshot-status").filter(has_text="ready").wait_for()
    assert page.get_by_test_id("snapshot-rows").inner_text() == "1"
    tab_to(page, "reward")  # "Train on this dataset" is reachable too

    page.goto(f"/tasks/{task.pk}/")
    tab_to(page, "Flag…")
    keys(page, "Enter")
    page.wait_for_url(f"**/judgments/{judgment.pk}/flag/")
    # the reason it needs has the focus; without one nothing is flagged
    reason_focused = "() => document.activeElement.name === 'reason'"
    page.wait_for_function(reason_focused)
    tab_to(page, "Flag the judgment")
    keys(page, "Enter")
    page.get_by_role("alert").wait_for()
    assert not Judgment.objects.get(pk=judgment.pk).flagged
    page.wait_for_function(reason_focused)
    page.keyboard.type("The verdict contradicts the choice.")
    tab_to(page, "Flag the judgment")
    keys(page, "Enter")
    page.wait_for_url(f"**/tasks/{task.pk}/")
    assert "contradicts" in page.get_by_test_id("flag-state").inner_text()
    assert Judgment.objects.get(pk=judgment.pk).flagged
    page.watch.assert_clean()
