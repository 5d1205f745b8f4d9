"""Browser helpers of the journey: signing in, keys, screenshots, and what a page must not do."""

from __future__ import annotations

import io
from pathlib import Path

README_SHOT_MAX_BYTES = 120_000
PASSWORD = "pw-for-tests-1"


class Watch:
    """Dialogs, console errors, page errors and failed responses seen by a page."""

    def __init__(self, page) -> None:
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.failed: list[str] = []
        self.expected_status: set[int] = set()
        page.on("dialog", self._dialog)
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def expect_failed(self, status: int) -> None:
        """Responses of this status were the point (a refusal under test), not a fault."""
        self.expected_status.add(status)

    def assert_clean(self) -> None:
        # The browser's own /favicon.ico probe (the site has none) is not an error of the page.
        failed = [
            f
            for f in self.failed
            if not f.endswith("/favicon.ico") and int(f.split()[0]) not in self.expected_status
        ]
        console = [m for m in self.console_errors if not m.startswith("Failed to load resource")]
        assert self.dialogs == [] and self.page_errors == []
        assert console == [] and failed == []


def sign_in(page, username: str, password: str, next_url: str = "/") -> None:
    page.goto(f"/login/?next={next_url}")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login/" not in url)


def keys(page, *sequence: str) -> None:
    for key in sequence:
        page.keyboard.press(key)


class Shots:
    """Numbered full-page PNGs of every step in ``folder``; the chosen ones (``readme=True``)
    also as small viewport-sized WebP files in ``readme_folder`` when one is given."""

    def __init__(self, folder: Path, readme_folder: str | None) -> None:
        self.folder = folder
        self.readme_folder = Path(readme_folder) if readme_folder else None
        self.count = self.readme_count = 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def __call__(
        self, page, name: str, readme: bool = False, at: str = "", height: int = 0
    ) -> None:
        """Screenshot a step; a README one shows the viewport (``height`` pixels tall if
        given), scrolled to ``at`` if given."""
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)
        if readme and self.readme_folder is not None:
            viewport = page.viewport_size
            if height:
                page.set_viewport_size({**viewport, "height": height})
            if at:
                page.locator(at).first.evaluate("e => e.scrollIntoView({block: 'start'})")
            from PIL import Image  # matplotlib's dependency; only needed for the README's images

            self.readme_folder.mkdir(parents=True, exist_ok=True)
            image = Image.open(io.BytesIO(page.screenshot()))
            self.readme_count += 1
            path = self.readme_folder / f"{self.readme_count}-{name}.webp"
            image.save(path, "WEBP", quality=70, method=6)
            size = path.stat().st_size
            assert size < README_SHOT_MAX_BYTES, f"{path.name}: {size} bytes"
            page.set_viewport_size(viewport)
            page.evaluate("window.scrollTo(0, 0)")
