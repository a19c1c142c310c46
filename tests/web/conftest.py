"""Fixtures of the dashboard tests: an app on a fresh SQLite database, logged-in clients."""

from __future__ import annotations

import re
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from shared import db
from tests.jobs.helpers import reset_process_caches
from tests.services import require_or_skip

PASSWORD = "correct-horse-battery"
TOKEN = "test-token-0123456789"


@pytest.fixture
def web_env(tmp_path, monkeypatch):
    """A migrated SQLite database and the embedded broker under tmp_path."""
    data_dir = tmp_path / "data"
    env = {
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'td.db'}",
        "REDIS_URL": "",
        "ADMIN_PASSWORD": PASSWORD,
        "API_TOKENS": f"other-token-abcdef,{TOKEN}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_process_caches()
    db.upgrade()
    yield data_dir
    reset_process_caches()


@pytest.fixture
def app(web_env):
    from web import create_app

    return create_app({"TESTING": True})


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def client(app):
    """A test client logged in as admin (through the real login form, CSRF included)."""
    return logged_in(app)


def logged_in(app):
    """A new test client of `app`, logged in as admin through the login form."""
    c = app.test_client()
    token = csrf_token(c.get("/login").text)
    r = c.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302, r.text
    return c


def chromium() -> str:
    """Debian's chromium for the browser tests; skip without it (fail in CI)."""
    path = shutil.which("chromium")
    return require_or_skip("chromium", path, "is not installed (apt-get install chromium)")


@pytest.fixture
def browser(app):
    """(page, base URL, uncaught script errors): headless chromium, logged in."""
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with sync_api.sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=executable)
            page = chrome.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/login")
            page.fill("input[name=password]", PASSWORD)
            page.click("#login button[type=submit]")
            page.wait_for_url(f"{base}/runs")
            yield page, base, errors
            chrome.close()
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def api(app):
    """A test client that authenticates with an API token."""
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return c


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can see a failure (and save
    a screenshot) while tearing down."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
