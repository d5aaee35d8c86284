"""The page under its Content-Security-Policy: no inline script, style or event handler in its
files, and in Chromium against the real service no violation is reported (the watcher itself is
shown to catch one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from serving.api.page import CONTENT_SECURITY_POLICY
from tests.serving.static.csp import csp_violations, watch_csp
from tests.support.browser import OfflinePage, offline_page
from tests.support.server import REPO, RunningServer

STATIC = REPO / "serving" / "static"


class InlineFinder(HTMLParser):
    """Everything in an HTML file that a CSP without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.found.append("<style> element")
        if tag == "script" and "src" not in names:
            self.found.append("<script> without src")
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> event handler attribute")
            if name == "style":
                self.found.append(f"<{tag} style=...> attribute")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline script text")


def test_the_policy_allows_nothing_inline() -> None:
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "style-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.glob("*.html")))
def test_html_has_no_inline_script_style_or_handler(name: str) -> None:
    finder = InlineFinder()
    finder.feed((STATIC / name).read_text())
    assert finder.found == []


#: What the JavaScript must not do under the policy (or at all): build HTML from strings, set
#: inline styles or handlers as attributes, evaluate strings.
FORBIDDEN_JS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\("
    r"|setAttribute\(\s*[\"'](?:style|on\w+)[\"']|set(?:Timeout|Interval)\(\s*[\"'`]"
)


@pytest.mark.parametrize("path", sorted(STATIC.glob("*.js")), ids=lambda p: p.name)
def test_javascript_builds_no_inline_code_or_style(path: Path) -> None:
    assert FORBIDDEN_JS.findall(path.read_text()) == []


@pytest.fixture
def opened(browser: Browser, page_server: RunningServer) -> Iterator[OfflinePage]:
    with offline_page(browser, page_server.base_url, viewport={"width": 1180, "height": 660}) as o:
        watch_csp(o.page)
        yield o


def draw_a_stroke(page: Page) -> None:
    box = page.get_by_test_id("pad").bounding_box()
    assert box is not None
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 0.2 * box["height"])
    page.mouse.down()
    page.mouse.move(x, box["y"] + 0.8 * box["height"], steps=8)
    page.mouse.up()


@pytest.mark.e2e
@pytest.mark.slow
def test_the_watcher_catches_a_violation(opened: OfflinePage) -> None:
    """The check below can fail: the policy is enforced on the page and the watcher sees it."""
    page = opened.page
    page.goto(opened.url("/"))
    ran = page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__inlineRan = true";
            document.body.append(script);
            document.body.setAttribute("style", "background: red");
            return window.__inlineRan === true;
        }"""
    )
    assert ran is False
    expect(page.locator("body")).not_to_have_css("background-color", "rgb(255, 0, 0)")
    page.wait_for_function("window.__cspViolations.length >= 2")
    violations = csp_violations(page)
    assert any(v.startswith("script-src-elem blocked inline") for v in violations), violations
    assert any(v.startswith("style-src-attr blocked inline") for v in violations), violations


@pytest.mark.e2e
@pytest.mark.slow
def test_no_violation_while_the_page_works(opened: OfflinePage) -> None:
    """Against the real service (no keys file): draw, get an answer, let the monitor refresh;
    nothing is blocked, no key panel, no Authorization header."""
    page = opened.page
    api: list[Request] = []
    page.on("request", lambda r: api.append(r) if "/static/" not in r.url else None)
    page.goto(opened.url("/"))
    draw_a_stroke(page)
    expect(page.locator('[data-testid=prediction][data-strokes="1"]')).to_have_text(
        re.compile(r"^\d")
    )
    expect(page.get_by_test_id("monitor-status")).to_contain_text("Updated")
    expect(page.get_by_test_id("monitor-status")).to_contain_text("over the last")  # 2 scrapes
    expect(page.get_by_test_id("key-panel")).to_be_hidden()
    assert any(r.url.endswith("/v1/predict") for r in api)
    assert all("authorization" not in r.headers for r in api)
    assert opened.problems() == []
    assert csp_violations(page) == []
