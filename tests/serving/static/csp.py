"""Content-Security-Policy violations seen by the page in Chromium: the page's tests assert
there are none, under the policy the service sends (serving/api/page.py)."""

from __future__ import annotations

from playwright.sync_api import Page

#: Records every Content-Security-Policy violation the page reports (an init script: Playwright
#: injects it through the DevTools protocol, which the page's CSP does not govern).
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} `
    + `at ${event.sourceFile}:${event.lineNumber}`);
});
"""


def watch_csp(page: Page) -> None:
    """From the next navigation on, collect the page's CSP violations (csp_violations)."""
    page.add_init_script(CSP_WATCH)


def csp_violations(page: Page) -> list[str]:
    """The violations reported since the current document loaded: [] when all is well."""
    found: list[str] = page.evaluate("window.__cspViolations ?? null")
    assert found is not None, "watch_csp(page) was not called before the page was loaded"
    return found
