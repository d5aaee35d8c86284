"""The API page at /schema renders in a real Chromium with no network beyond the service."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from tests.support.browser import offline_page
from tests.support.server import RunningServer

pytestmark = pytest.mark.e2e


def test_schema_page_renders_offline(browser: Browser, page_server: RunningServer) -> None:
    with offline_page(browser, page_server.base_url) as opened:
        opened.page.goto(opened.url("/schema"))
        operation = opened.page.locator(".opblock-summary-path", has_text="/v1/predict")
        operation.first.wait_for(timeout=15_000)
        assert (
            opened.page.locator(".swagger-ui .title")
            .first.inner_text()
            .startswith("MNIST inference service")
        )
        assert opened.problems() == []
