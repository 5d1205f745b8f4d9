"""Content-Security-Policy (django-csp) in real Chromium: every main page, as the role that
uses it, carries the header and runs (htmx, the workspace script, charts, live polling)
without one violation."""

import os
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.models import DatasetSnapshot
from annotation.quality import reports
from models_registry import services as registry_services
from training import services as training_services
from training.models import TrainingRun

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Injected before any page script: each violation the document reports is kept.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${where}`);
});
"""


@pytest.fixture
def browser(monkeypatch):
    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM} (scripts/test installs it)"
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # playwright's loop in this thread
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def world():
    """The demo seed (users, a compare project, a labelled project, its snapshot and quality
    reports), a running training run with a loss curve and a registered model version."""
    call_command("seed_demo", "--limit", "20", "--persona-pairs", "12")
    snapshot = DatasetSnapshot.objects.get(project__slug="hh-harmless-labels")
    reports.compute_and_store(snapshot.project, "quality", {"scope": "all"})
    reports.compute_and_store(snapshot.project, "discretion", {"reference": None})
    run = TrainingRun.objects.create(kind="reward", snapshot=snapshot, base_model="builtin:tiny")
    training_services.claim_run(run_id=run.pk, worker="csp-test")
    for step in (1, 2, 3):
        training_services.record_progress(
            run_id=run.pk, step=step, max_steps=10, logs={"loss": 1.0 / step}, log_tail=""
        )
    version = registry_services.register_model_version(
        name="csp-model",
        kind="reward",
        artifact_uri="file:///nonexistent/csp-model",
        sha256="0" * 64,
        size_bytes=1,
        dataset_snapshot=snapshot,
    )
    return {"run": run, "version": version}


class Page:
    """A signed-in (or anonymous) page that records CSP violations and console errors."""

    def __init__(self, browser, base_url: str, login: tuple[str, str] | None) -> None:
        self.context = browser.new_context(base_url=base_url)
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.console: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.console.append(str(e)))
        self.page.on(  # the browser's own /favicon.ico probe (the site has none) aside
            "response",
            lambda r: (
                r.status >= 400
                and not r.url.endswith("/favicon.ico")
                and self.console.append(f"{r.status} {r.url}")
            ),
        )
        if login:
            self.page.goto("/login/")
            self.page.fill("input[name=username]", login[0])
            self.page.fill("input[name=password]", login[1])
            self.page.click("button[type=submit]")
            self.page.wait_for_url("**/")

    def _console(self, message) -> None:
        """Errors and every CSP report (a 404 is reported by the response listener)."""
        text = message.text
        if "Content Security Policy" in text or (
            message.type == "error" and not text.startswith("Failed to load resource")
        ):
            self.console.append(text)

    def visit(self, url: str, settle=None) -> None:
        reply = self.page.goto(url)
        assert reply.status == 200, url
        policy = reply.headers.get("content-security-policy", "")
        assert (
            "script-src 'self'" in policy
            and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        ), (url, policy)
        self.page.wait_for_load_state("networkidle")
        if settle:
            settle(self.page)
        violations = self.page.evaluate("window.__cspViolations")
        assert violations == [], (url, violations)
        assert self.console == [], (url, self.console)

    def close(self) -> None:
        self.context.close()


def htmx_polls(path: str):
    """The page's htmx polling fires and swaps (htmx runs under the policy)."""

    def settle(page) -> None:
        assert page.evaluate("typeof htmx") == "object"
        with page.expect_response(
            lambda r: path in r.url and r.request.headers.get("hx-request") == "true",
            timeout=8_000,
        ) as reply:
            pass
        assert reply.value.status == 200

    return settle


def charts_drawn(page) -> None:
    """matplotlib's inline SVG charts are on the page."""
    assert page.locator(".chart svg").count() >= 1


def test_every_main_page_runs_under_the_policy(browser, live_server, world):
    run, version = world["run"], world["version"]

    anonymous = Page(browser, live_server.url, None)
    anonymous.visit("/login/")
    anonymous.close()

    annotator = Page(browser, live_server.url, ("alice", "alice-demo-pass"))
    annotator.visit("/")
    annotator.visit("/projects/hh-harmless/guidelines/")

    def workspace_works(page) -> None:
        page.wait_for_selector("[data-start] button:focus")
        page.evaluate("window.__sameDocument = true")
        page.keyboard.press("Enter")  # htmx POSTs the start form and swaps the task in
        page.wait_for_selector('form[data-kind="compare"]')
        assert page.evaluate("window.__sameDocument") is True
        page.keyboard.press("?")  # workspace.js: the help overlay
        assert page.locator("#help").is_visible()
        page.keyboard.press("Escape")
        page.keyboard.press("1")  # workspace.js: a key picks a response
        assert page.locator('input[name="choice"][value="0"]').is_checked()

    annotator.visit("/projects/hh-harmless/work/", settle=workspace_works)
    annotator.close()

    admin = Page(browser, live_server.url, ("admin", "admin-demo-pass"))
    for url, settle in [
        ("/", None),
        ("/quality/", None),
        ("/quality/hh-harmless-labels/", None),
        ("/quality/hh-harmless-labels/discretion/", charts_drawn),
        ("/training/", None),
        ("/training/launch/reward/", None),
        (f"/training/runs/{run.pk}/", htmx_polls(f"/training/runs/{run.pk}/")),
        ("/registry/", None),
        (f"/registry/versions/{version.pk}/", None),
        (f"/registry/versions/{version.pk}/card/", None),
        ("/projects/hh-harmless/import/", None),
        ("/api/docs/", lambda page: page.wait_for_selector(".swagger-ui .info")),
        ("/admin/", None),
    ]:
        admin.visit(url, settle)
    admin.close()


def test_the_policy_header_forbids_inline_scripts(client):
    policy = client.get("/login/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"].split()[0] == "'self'"
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-inline'" not in directives["style-src-elem"]
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
