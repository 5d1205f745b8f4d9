"""The journey's browser: one Chromium per module, a signed-in context per person."""

import os
import shutil
from pathlib import Path

import pytest

from tests.journey.browser import PASSWORD, Watch, sign_in

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Sign-ins need no production-strength hashing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="module")
def browser():
    # Must-show test: a missing browser fails it, it never skips it.
    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM} (scripts/test installs it)"
    from playwright import sync_api

    # playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # still synchronous, so Django's guard against ORM use inside a loop is lifted here only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
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


@pytest.fixture
def open_as(browser, live_server):
    """``open_as(user)`` → a signed-in page in its own browser context (its own cookies)."""
    contexts = []

    def open_page(user, next_url: str = "/"):
        context = browser.new_context(
            viewport={"width": 1100, "height": 700},
            base_url=live_server.url,
            accept_downloads=True,
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.watch = Watch(page)
        if user is not None:
            sign_in(page, user.username, PASSWORD, next_url)
        return page

    yield open_page
    for context in contexts:
        context.close()
