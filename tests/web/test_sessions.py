"""Server-side sessions (`web.sessions`): logging out, a new password or the end of the
session's life ends every copy of its cookie."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from shared.db import session_scope
from shared.models import LoginSession, utcnow
from tests.jobs.helpers import reset_process_caches
from tests.web.conftest import PASSWORD, csrf_token, logged_in


def _rows() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(LoginSession))


def _replay(app, cookie: str):
    """A fresh client that carries only a copy of `cookie`."""
    c = app.test_client()
    c.set_cookie("session", cookie)
    return c


def test_a_cookie_copied_before_logout_is_refused_after_it(app):
    client = logged_in(app)
    copy = client.get_cookie("session").value
    assert _replay(app, copy).get("/api/runs").status_code == 200
    other = logged_in(app)  # another browser's session is its own
    assert _rows() == 2

    token = csrf_token(client.get("/runs").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replayed = _replay(app, copy)
    assert replayed.get("/api/runs").status_code == 401
    assert replayed.get("/runs").headers["Location"].startswith("/login")
    assert _rows() == 1
    assert other.get("/api/runs").status_code == 200


def test_the_row_holds_a_hash_of_the_id_not_the_id(app):
    client = logged_in(app)
    with session_scope() as s:
        (row_id,) = s.scalars(select(LoginSession.id)).all()
    assert row_id not in client.get_cookie("session").value
    assert len(row_id) == 64


def test_a_new_password_ends_every_session_and_a_restart_does_not(web_env, monkeypatch):
    from web import create_app

    app = create_app({"TESTING": True})
    copy = logged_in(app).get_cookie("session").value
    restarted = create_app({"TESTING": True})  # the same password and key
    assert _replay(restarted, copy).get("/api/runs").status_code == 200

    monkeypatch.setenv("ADMIN_PASSWORD", "a-new-password-42")
    reset_process_caches()
    changed = create_app({"TESTING": True})
    assert _replay(changed, copy).get("/api/runs").status_code == 401


def test_an_expired_session_is_refused(app):
    client = logged_in(app)
    with session_scope() as s:
        s.execute(update(LoginSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/runs").status_code == 401


def test_logging_in_again_replaces_the_id_and_end_all_ends_every_session(app):
    from web import sessions

    client = app.test_client()
    client.set_cookie("session", "planted-by-someone-else")
    token = csrf_token(client.get("/login").text)
    data = {"username": "admin", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data).status_code == 302
    assert client.get_cookie("session").value != "planted-by-someone-else"
    second = logged_in(app)
    with app.app_context():
        assert sessions.end_all("admin") == 2
    assert client.get("/api/runs").status_code == 401
    assert second.get("/api/runs").status_code == 401


def test_a_new_generated_password_ends_every_session(web_env, monkeypatch):
    """`text-diffusion up --new-password` writes a new hash: the servers it restarts refuse
    every session made under the old one."""
    from shared.settings import get_settings
    from web import create_app
    from web.auth import ensure_password

    monkeypatch.delenv("ADMIN_PASSWORD")
    reset_process_caches()
    password = ensure_password(get_settings(), new=True)  # known to this test only
    app = create_app({"TESTING": True})
    client = app.test_client()
    token = csrf_token(client.get("/login").text)
    data = {"username": "admin", "password": password, "csrf_token": token}
    assert client.post("/login", data=data).status_code == 302
    copy = client.get_cookie("session").value
    assert _replay(create_app({"TESTING": True}), copy).get("/api/runs").status_code == 200

    ensure_password(get_settings(), new=True)
    assert _replay(create_app({"TESTING": True}), copy).get("/api/runs").status_code == 401
