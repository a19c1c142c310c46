"""Login for the pages, tokens for the API, CSRF for cookie sessions, first-start secrets."""

from __future__ import annotations

import re
import stat

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Run
from tests.jobs.helpers import reset_process_caches
from tests.web.conftest import PASSWORD, TOKEN, csrf_token


def _runs() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count(Run.id)))


def _login(client, password: str, next_: str | None = None):
    token = csrf_token(client.get("/login").text)
    url = "/login" if next_ is None else f"/login?next={next_}"
    return client.post(url, data={"username": "admin", "password": password, "csrf_token": token})


def test_without_credentials_the_api_says_401_and_pages_redirect_to_login(app):
    anonymous = app.test_client()
    for path in ("/api/runs", "/api/jobs", "/api/workers", "/api/runs/1", "/api/presets"):
        r = anonymous.get(path)
        assert r.status_code == 401, path
        assert r.is_json and "API_TOKENS" in r.json["error"]["message"]
    r = anonymous.post("/api/runs", json={"preset": "tiny"})
    assert r.status_code == 401
    r = anonymous.get("/runs?status=failed")
    assert r.status_code == 302
    assert r.headers["Location"] == "/login?next=/runs?status%3Dfailed"
    assert anonymous.get("/workers").headers["Location"].startswith("/login")
    # What needs no login: the login page, health, the API's description.
    assert anonymous.get("/login").status_code == 200
    assert anonymous.get("/healthz").json == {"ok": True}
    assert anonymous.get("/api/openapi.json").status_code == 200
    assert _runs() == 0


def test_tokens(app):
    c = app.test_client()
    for header, status in [
        (f"Bearer {TOKEN}", 200),
        ("Bearer other-token-abcdef", 200),  # every token in API_TOKENS works
        (f"bearer {TOKEN}", 200),
        ("Bearer wrong-token", 401),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (f"Basic {TOKEN}", 401),
        ("Bearer ", 401),
    ]:
        r = c.get("/api/runs", headers={"Authorization": header})
        assert r.status_code == status, header
    r = c.get("/api/runs", headers={"Authorization": "Bearer wrong-token"})
    assert r.json["error"]["message"] == "invalid API token"
    # A token opens the API, not the pages.
    r = c.get("/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 302


def test_a_wrong_token_is_refused_even_with_a_session(client):
    r = client.get("/api/runs", headers={"Authorization": "Bearer wrong-token"})
    assert r.status_code == 401


def test_no_api_tokens_configured_means_no_token_works(web_env, monkeypatch):
    monkeypatch.setenv("API_TOKENS", "")
    reset_process_caches()
    from web import create_app

    c = create_app({"TESTING": True}).test_client()
    assert c.get("/api/runs", headers={"Authorization": "Bearer "}).status_code == 401
    assert c.get("/api/runs", headers={"Authorization": "Bearer x"}).status_code == 401


def test_a_session_reads_the_api_and_writes_only_with_the_csrf_token(client):
    assert client.get("/api/runs").status_code == 200
    r = client.post("/api/runs", json={"preset": "tiny"})
    assert r.status_code == 403
    assert "X-CSRFToken" in r.json["error"]["message"]
    r = client.post("/api/runs", json={"preset": "tiny"}, headers={"X-CSRFToken": "forged"})
    assert r.status_code == 403
    assert client.patch("/api/jobs/1", json={"priority": 1}).status_code == 403
    assert _runs() == 0

    token = csrf_token(client.get("/login").text)
    r = client.post("/api/runs", json={"preset": "tiny"}, headers={"X-CSRFToken": token})
    assert r.status_code == 201, r.text
    assert _runs() == 1


def test_wrong_passwords_do_not_log_in(app):
    c = app.test_client()
    for user, password in [("admin", "wrong"), ("admin", ""), ("root", PASSWORD)]:
        token = csrf_token(c.get("/login").text)
        r = c.post("/login", data={"username": user, "password": password, "csrf_token": token})
        assert r.status_code == 401
        assert "Wrong username or password." in r.text
    assert c.get("/api/runs").status_code == 401
    assert c.get("/runs").status_code == 302
    # The form itself needs its CSRF token.
    r = c.post("/login", data={"username": "admin", "password": PASSWORD})
    assert r.status_code == 400
    assert c.get("/api/runs").status_code == 401


@pytest.mark.parametrize(
    "next_, expected",
    [
        (None, "/runs"),
        ("/workers", "/workers"),
        ("/runs?status%3Dfailed", "/runs?status=failed"),
        ("https://evil.example/", "/runs"),
        ("//evil.example/x", "/runs"),
        ("/\\evil.example", "/runs"),
        ("/%09/evil.example", "/runs"),
        ("%2F%2Fevil.example", "/runs"),
        ("javascript:alert(1)", "/runs"),
        ("evil.example", "/runs"),
    ],
)
def test_login_redirects_only_to_local_paths(app, next_, expected):
    r = _login(app.test_client(), PASSWORD, next_)
    assert r.status_code == 302
    assert r.headers["Location"] == expected


def test_logout_ends_the_session(client):
    token = csrf_token(client.get("/login").text)
    assert client.post("/logout").status_code == 400  # CSRF
    assert client.get("/api/runs").status_code == 200
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    assert client.get("/api/runs").status_code == 401


def test_first_start_generates_a_password_prints_it_once_and_keeps_a_hash(
    web_env, monkeypatch, capfd
):
    monkeypatch.delenv("ADMIN_PASSWORD")
    reset_process_caches()
    from web import create_app

    capfd.readouterr()
    app = create_app({"TESTING": True})
    err = capfd.readouterr().err
    match = re.search(r"Dashboard login: admin / (\S+)", err)
    assert match, err
    password = match.group(1)
    path = web_env / "admin_password.hash"
    stored = path.read_text()
    assert password not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = create_app({"TESTING": True})
    assert capfd.readouterr() == ("", "")
    assert path.read_text() == stored
    for a in (app, again):
        c = a.test_client()
        assert _login(c, PASSWORD).status_code == 401  # the test env's password is gone
        assert _login(c, password).status_code == 302
        assert c.get("/api/runs").status_code == 200


def test_secret_key_is_generated_once_and_sessions_survive_a_restart(web_env, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    reset_process_caches()
    from web import create_app

    first = create_app({"TESTING": True})
    path = web_env / "secret_key"
    key = path.read_text().strip()
    assert len(key) >= 32 and first.secret_key == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    c = first.test_client()
    assert _login(c, PASSWORD).status_code == 302
    cookie = c.get_cookie("session")
    assert cookie is not None

    restarted = create_app({"TESTING": True})
    assert restarted.secret_key == key
    c2 = restarted.test_client()
    c2.set_cookie("session", cookie.value)
    assert c2.get("/api/runs").status_code == 200


def test_secret_key_from_settings_wins(web_env, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    reset_process_caches()
    from web import create_app

    assert create_app({"TESTING": True}).secret_key == "s" * 40
    assert not (web_env / "secret_key").exists()


def test_oversized_bodies_are_refused(app, client):
    api = app.test_client()
    r = api.post(
        "/api/runs",
        data=b"{" + b" " * (2 << 20) + b"}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 413 and r.is_json
    assert r.json["error"]["status"] == 413
    assert _runs() == 0
