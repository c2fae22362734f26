"""A real, offline browser for the explorer's tests, its benchmark and its screenshot script.

Debian's Chromium (``apt-get install chromium``; .ci/run installs it) driven by Playwright from
PyPI, which is told where that Chromium is: ``playwright install`` (a browser download) is never
needed. ``CHROMIUM`` in the environment names another binary.

``Browser()`` is a context manager: ``with Browser() as b: page = b.page(); b.load(page, path)``.
Each page it makes has every network request refused (``page.route``) and counted, and collects
its console errors and uncaught exceptions: a test asserts that ``b.requests`` holds nothing but
the page's own file and ``b.errors`` is empty.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Headless, and nothing started that talks to the network by itself.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1440, "height": 900}  # a desktop screen


def find_chromium() -> str | None:
    """The Chromium to drive: $CHROMIUM, else Debian's /usr/bin/chromium, else one on PATH."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def missing() -> str | None:
    """Why no browser test can run here (None: they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if find_chromium() is None:
        return "no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chromium)"
    return None


class Browser:
    def __init__(self, viewport: dict[str, int] | None = None):
        self.viewport = viewport or VIEWPORT
        self.requests: list[str] = []  # every request any page made (each was refused, except the page's own file)
        self.errors: list[str] = []  # console errors and uncaught exceptions

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=find_chromium(), args=ARGS)
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.browser.close()
        self._playwright.stop()

    def page(self):
        """A new page in its own context, offline: every request is refused, counted and logged."""
        context = self.browser.new_context(viewport=self.viewport, service_workers="block")
        page = context.new_page()
        page.set_default_timeout(10_000)  # a page that is drawn answers in milliseconds
        self._allowed: str | None = None

        def route(route):
            url = route.request.url
            self.requests.append(url)
            if url == self._allowed:
                route.continue_()
            else:
                route.abort()

        page.route("**/*", route)
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        return page

    def load(self, page, path: str | Path, timeout_ms: int = 30_000) -> None:
        """Open a file (file://) and wait until the explorer has drawn (it sets body[data-ready])."""
        url = Path(path).resolve().as_uri()
        self._allowed = url
        page.goto(url)
        # A selector, not a function: the page's Content-Security-Policy forbids eval, and Playwright
        # evaluates a wait_for_function string with it.
        from playwright.sync_api import TimeoutError as Timeout

        try:
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=timeout_ms)
        except Timeout:
            raise AssertionError(f"the page did not finish drawing in {timeout_ms} ms; errors: {self.errors}") from None

    def foreign_requests(self, path: str | Path) -> list[str]:
        """Requests other than the page's own file (there must be none)."""
        own = Path(path).resolve().as_uri()
        return [url for url in self.requests if url != own]
