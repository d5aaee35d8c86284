"""The page in Chromium against a real service that requires keys (a keys file and
SERVING_REQUIRE_KEYS=true): it learns from the service's 401 that keys are required, asks for
one, keeps it in sessionStorage (never in a URL), sends it as ``Authorization: Bearer`` on every
API call, and forgets it on request. The browser's network layer only records what was sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, expect

from tests.serving.static.csp import csp_violations, watch_csp
from tests.serving.static.test_csp import draw_a_stroke
from tests.support.browser import OfflinePage, offline_page
from tests.support.server import RunningServer, serving_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "page-key-5d8b1e4a9c0f2736"
STORAGE = "mnist-inference.api-key"
#: Chromium logs every 4xx fetch as a console error; these are the stand-in's, expected here.
EXPECTED_401 = "the server responded with a status of 401"


def is_api(url: str) -> bool:
    """The service's API, which keys guard; the page and its files are served without a key."""
    path = urlsplit(url).path
    return path != "/" and not path.startswith("/static/")


class KeyedService:
    """Records what the page sends to the real service (path, Authorization), in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.urls: list[str] = []

    def __call__(self, route: Route) -> None:
        request = route.request
        self.seen.append((urlsplit(request.url).path, request.headers.get("authorization")))
        route.fallback()  # to the real service

    def record(self, request: Request) -> None:
        self.urls.append(request.url)

    def since(self, start: int) -> list[tuple[str, str | None]]:
        return self.seen[start:]

    def since_first(self, authorization: str) -> list[tuple[str, str | None]]:
        """What was sent from the first request carrying ``authorization`` on: requests are
        recorded as the page issues them, so every one after it carries the key it reads."""
        first = next(i for i, (_, sent) in enumerate(self.seen) if sent == authorization)
        return self.seen[first:]


def open_keyed(context: BrowserContext, service: KeyedService) -> Page:
    page = context.new_page()
    watch_csp(page)
    page.route(is_api, service)
    page.on("request", service.record)
    return page


def stored(page: Page) -> str | None:
    value: str | None = page.evaluate(f"sessionStorage.getItem({STORAGE!r})")
    return value


def problems(opened: OfflinePage) -> list[str]:
    return [p for p in opened.problems() if EXPECTED_401 not in p]


@pytest.fixture(scope="module")
def keyed_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("keyed-page")
    keys = directory / "keys.toml"
    keys.write_text(f'[[keys]]\nname = "page"\nkey = "{KEY}"\nscopes = ["infer", "read"]\n')
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_KEYS_FILE": str(keys),
        "SERVING_REQUIRE_KEYS": "true",
    }
    with serving_process(env, directory / "server.log") as server:
        yield server


@pytest.fixture
def opened(browser: Browser, keyed_server: RunningServer) -> Iterator[OfflinePage]:
    with offline_page(browser, keyed_server.base_url, viewport={"width": 1180, "height": 660}) as o:
        yield o


def test_the_page_asks_for_a_key_keeps_it_in_the_tab_and_sends_it(opened: OfflinePage) -> None:
    service = KeyedService()
    page = open_keyed(opened.page.context, service)
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    panel = page.get_by_test_id("key-panel")
    status = page.get_by_test_id("key-status")

    # First calls (the monitor's) answer 401: the page asks for a key.
    page.goto(opened.url("/"))
    expect(panel).to_be_visible()
    expect(status).to_contain_text("needs an API key")
    expect(page.get_by_test_id("key-forget")).to_be_hidden()
    draw_a_stroke(page)
    expect(page.locator("#answer-detail")).to_contain_text("answered 401")

    # A wrong key: sent, refused, the panel says so.
    page.get_by_test_id("key-input").fill("not-the-key")
    page.get_by_test_id("key-use").click()
    expect(status).to_contain_text("did not accept the key")
    assert ("/v1/predict", "Bearer not-the-key") in service.seen

    # The right key, entered with Enter: the drawing is asked about again and answered.
    page.get_by_test_id("key-input").fill(KEY)
    page.get_by_test_id("key-input").press("Enter")
    expect(page.locator('[data-testid=prediction][data-strokes="1"]')).to_have_text(
        re.compile(r"^\d")
    )
    expect(status).to_contain_text("Using the API key")
    expect(page.get_by_test_id("key-input")).to_have_value("")  # not left in the field
    expect(page.get_by_test_id("monitor-status")).to_contain_text("Updated")
    after = service.since_first(f"Bearer {KEY}")
    assert {path for path, _ in after} >= {"/v1/predict", "/v1/models", "/metrics"}
    assert all(authorization == f"Bearer {KEY}" for _, authorization in after), after
    assert stored(page) == KEY

    # Never in a URL, not even the page's own.
    assert KEY not in page.url
    assert not [url for url in service.urls if KEY in url]

    # A reload in the same tab keeps the key: no 401 any more.
    start = len(service.seen)
    page.reload()
    expect(status).to_contain_text("Using the API key kept for this tab")
    expect(page.get_by_test_id("monitor-status")).to_contain_text("Updated")
    assert service.since(start)
    assert all(authorization == f"Bearer {KEY}" for _, authorization in service.since(start))

    # Forget: gone from storage, calls go without it, the page asks again.
    page.get_by_test_id("key-forget").click()
    assert stored(page) is None
    expect(status).to_contain_text("needs an API key")
    assert service.seen[-1][1] is None
    assert problems(opened) == []
    assert csp_violations(page) == []


def test_another_tab_does_not_get_the_key(opened: OfflinePage) -> None:
    """sessionStorage is per tab: a new tab of the same browser starts without the key."""
    first_service, second_service = KeyedService(), KeyedService()
    first = open_keyed(opened.page.context, first_service)
    first.goto(opened.url("/"))
    first.get_by_test_id("key-input").fill(KEY)
    first.get_by_test_id("key-use").click()
    expect(first.get_by_test_id("key-status")).to_contain_text("Using the API key")
    assert stored(first) == KEY

    second = open_keyed(opened.page.context, second_service)
    second.goto(opened.url("/"))
    expect(second.get_by_test_id("key-status")).to_contain_text("needs an API key")
    assert stored(second) is None
    assert second_service.seen
    assert all(authorization is None for _, authorization in second_service.seen)
    assert stored(first) == KEY
    assert csp_violations(first) == []
    assert csp_violations(second) == []
