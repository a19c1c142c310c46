"""The Content-Security-Policy in a real browser: every page runs its own scripts and draws
its charts without a single violation, and an injected inline script is blocked.

Violations are collected twice: the `securitypolicyviolation` events a page fires (an
init script, which the policy does not govern, listens for them) and chromium's console
messages. A screenshot of the run page with its charts goes to
test-artifacts/csp-run-page.png.
"""

from __future__ import annotations

from tests.jobs.helpers import REPO
from tests.web.seed import add_run, add_sample_set, in_frontier

LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${where})`);
});
"""


def test_pages_run_under_the_policy_and_charts_render(browser, web_env):
    page, base, errors = browser
    first = add_run("first", tags=["a"])
    second = add_run("second", offset=0.2)
    sample_set = add_sample_set(first, ["In the beginning god created"])
    in_frontier(sample_set, "csp-frontier")
    console: list[str] = []
    page.on(
        "console",
        lambda msg: (
            console.append(msg.text)
            if "Content Security Policy" in msg.text or "Refused to" in msg.text
            else None
        ),
    )
    page.add_init_script(LISTEN)

    pages = [
        "/runs",
        f"/runs/{first}",
        "/runs/new",
        "/generate",
        "/sample-sets",
        f"/sample-sets/{sample_set}",
        f"/compare?runs={first},{second}",
        "/datasets",
        "/workers",
        "/frontier",
    ]
    for path in pages:
        if path == "/workers":
            # The moved script still refreshes the page from the API (every 5 s).
            with page.expect_response(lambda r: "/api/workers" in r.url, timeout=15_000):
                response = page.goto(base + path)
        else:
            response = page.goto(base + path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers.get("content-security-policy", ""), path
        page.wait_for_load_state("networkidle")
        if path == f"/runs/{first}":
            for chart in ("#chart-ratios", "#chart-bound", "#chart-train", "#chart-vs-ratio"):
                page.wait_for_selector(f"{chart} .uplot canvas")
            bar = page.locator("#status .progress > span")
            assert bar.evaluate("e => e.style.width") == "100%"  # drawn from data-progress
            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "csp-run-page.png"), full_page=True)
        if path.startswith("/compare"):
            page.wait_for_selector("#chart-curves .uplot canvas")
        if path == "/frontier":
            page.wait_for_selector("#chart-frontier .uplot canvas")
        assert page.evaluate("window.__csp") == [], path
    assert console == [] and errors == []

    # The check can fail: an inline script injected into a page is blocked and reported.
    page.goto(base + "/runs")
    page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__ran = true"; document.body.append(s); }"""
    )
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("window.__ran") is None
    assert "script-src" in page.evaluate("window.__csp")[0]
