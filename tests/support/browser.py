"""A real Chromium driven by Playwright, for the page's browser tests.

Debian's ``chromium`` package, not Playwright's own browser download (which cannot run on these
machines): ``.ci/run`` installs it. Every page opened here may reach only the service under test;
any other request is aborted and recorded, and console errors and uncaught exceptions are
collected, so a test can assert the page works offline and without JavaScript errors.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Route

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """Debian's chromium, else an installed Chrome; a clear failure (not a skip) without one."""
    names = ("chromium", "chromium-browser", "google-chrome")
    path = next((found for name in names if (found := shutil.which(name))), None)
    if path is None:
        raise RuntimeError("chromium not found: apt-get install chromium (.ci/run does it)")
    return path


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


@dataclass
class OfflinePage:
    """A page that may only talk to ``base_url``; what went wrong is collected for asserts."""

    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def problems(self) -> list[str]:
        """JavaScript errors and requests that tried to leave the service: [] when all is well."""
        return [*self.errors, *(f"blocked: {url}" for url in self.blocked)]


@contextmanager
def offline_page(browser: Browser, base_url: str, **context_options: Any) -> Iterator[OfflinePage]:
    """A fresh browser context (no shared cache or storage) with one page on ``base_url``."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    opened = OfflinePage(page, base_url)

    def only_the_service(route: Route) -> None:
        url = route.request.url
        if url == base_url or url.startswith(base_url + "/"):
            route.fallback()
        else:
            opened.blocked.append(url)
            route.abort("blockedbyclient")

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.errors.append(f"console: {message.text}")

    context.route("**/*", only_the_service)
    page.on("console", console)
    page.on("pageerror", lambda error: opened.errors.append(f"pageerror: {error}"))
    try:
        yield opened
    finally:
        context.close()
