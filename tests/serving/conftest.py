"""Serving fixtures: a real server on the session's tiny model, and one Chromium per test
module for the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.browser import launch
from tests.support.server import RunningServer, serving_process


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: while Playwright's sync API is open, its event loop counts as
    running in this thread, and any later test calling ``asyncio.run`` would fail."""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def page_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("logs") / "page-server.log"
    with serving_process({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}, log) as server:
        yield server
