"""The demo flow in real Chromium: an admin launches a reward-model run from the browser and
watches the live page (htmx polling) until the run has finished on a real Celery worker."""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from tests.support import REPO, start_worker, stop
from training.models import TrainingRun

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.training,
    pytest.mark.django_db(transaction=True),
]


def test_admin_launches_reward_run_and_watches_it_finish(
    live_server, admin_user, preference_snapshot, monkeypatch
):
    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM} (scripts/test installs it)"
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # playwright's loop in this thread
    admin_user.set_password("pw-for-tests-1")
    admin_user.save()
    SHOTS.mkdir(parents=True, exist_ok=True)
    worker = start_worker(settings.CELERY_BROKER_URL, one_job_per_child=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{live_server.url}/login/")
            page.fill("input[name=username]", admin_user.username)
            page.fill("input[name=password]", "pw-for-tests-1")
            page.click("button[type=submit]")
            page.click("text=Training")
            page.click("a.button:has-text('reward')")
            page.select_option("select[name=snapshot]", str(preference_snapshot.pk))
            page.fill("input[name=config_max_steps]", "8")
            page.fill("input[name=config_batch_size]", "8")
            page.fill("input[name=config_save_steps]", "0")
            page.screenshot(path=str(SHOTS / "training-launch.png"), full_page=True)
            page.click("button:has-text('Launch')")
            status = page.locator("[data-testid=run-status]")
            expect(status).to_have_text("succeeded", timeout=180_000)
            expect(page.locator("svg[aria-label='loss curve']")).to_be_visible()
            page.screenshot(path=str(SHOTS / "training-run-finished.png"), full_page=True)
            assert errors == []
            browser.close()
    except Exception as exc:
        raise AssertionError(f"{exc}\nworker:\n{stop(worker)[-5000:]}") from exc
    stop(worker)
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.created_by == admin_user
    assert run.output_model_version is not None
