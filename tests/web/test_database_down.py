"""While the database cannot be reached, the dashboard and the API answer 503 with a
Retry-After header (JSON under /api/, the error page elsewhere), never a 500; a bug that
SQLite reports as an OperationalError is still a 500."""

from __future__ import annotations

import socket
import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from tests.jobs.helpers import reset_process_caches
from tests.web.conftest import PASSWORD, TOKEN, csrf_token


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def down_app(web_env, monkeypatch):
    """The app over a PostgreSQL URL where no server listens."""
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test"
    monkeypatch.setenv("DATABASE_URL", url)
    reset_process_caches()
    from web import create_app

    return create_app({"TESTING": True})


def _unavailable(r) -> None:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers["Retry-After"] == "5"


def test_the_api_answers_503_with_a_retry_hint(down_app):
    api = down_app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    for r in (api.get("/api/runs"), api.get("/api/jobs/1"), api.post("/api/runs", json={})):
        _unavailable(r)
        assert r.is_json
        assert r.json["error"]["status"] == 503
        assert "database is unavailable" in r.json["error"]["message"]
    assert api.get("/healthz").json == {"ok": True}  # needs no database


def test_pages_and_logins_answer_503_with_a_retry_hint(down_app):
    c = down_app.test_client()
    token = csrf_token(c.get("/login").text)  # the login page itself needs no database
    r = c.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
    _unavailable(r)
    assert "database is unavailable" in r.text and "<html" in r.text.lower()
    with c.session_transaction() as session:
        session["sid"] = "a-session-id"  # a logged-in browser: its session is looked up
    _unavailable(c.get("/runs"))
    _unavailable(c.get("/api/runs"))


def test_only_outages_are_503():
    from web.errors import database_unavailable

    def raised(fn) -> OperationalError:
        try:
            fn()
        except sqlite3.OperationalError as exc:
            return OperationalError("statement", {}, exc)
        raise AssertionError("no error")

    bug = raised(lambda: sqlite3.connect(":memory:").execute("SELEC 1"))
    assert not database_unavailable(bug)

    def locked(tmp="file:locked?mode=memory&cache=shared"):
        holder = sqlite3.connect(tmp, uri=True, isolation_level=None)
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        other = sqlite3.connect(tmp, uri=True, timeout=0)
        other.execute("SELECT * FROM t")

    assert database_unavailable(raised(locked))
