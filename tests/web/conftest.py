"""Fixtures of the dashboard tests: an app on a fresh SQLite database, logged-in clients."""

from __future__ import annotations

import re

import pytest

from shared import db
from tests.jobs.helpers import reset_process_caches

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
    c = app.test_client()
    token = csrf_token(c.get("/login").text)
    r = c.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302, r.text
    return c


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
