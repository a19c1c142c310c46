"""The app's own pages for errors and its icon: every missing page looks the same, a stale
form says what to do, and no page asks for an icon that is not there."""

from __future__ import annotations

import pytest

from tests.web.conftest import PASSWORD, csrf_token


@pytest.mark.parametrize("path", ["/runs/abc", "/runs/999", "/no-such-page", "/sample-sets/x"])
def test_missing_pages_use_the_apps_error_page(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert '<link rel="stylesheet" href="/static/app.css">' in r.text  # the app's layout
    assert "<h1>404</h1>" in r.text and "Back to the runs" in r.text


def test_a_wrong_method_keeps_its_allow_header(client):
    r = client.get("/runs/1/cancel")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    assert "<h1>405</h1>" in r.text


def test_a_form_with_a_bad_csrf_token_says_to_reload_it(client):
    page = client.get("/runs/new")
    assert page.status_code == 200
    r = client.post(
        "/runs/new",
        data={"csrf_token": "stale", "preset": "tiny"},
        headers={"Referer": "http://localhost/runs/new"},
    )
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert '<link rel="stylesheet" href="/static/app.css">' in r.text
    assert "Reload the form and send it again." in r.text
    assert '<a href="http://localhost/runs/new" id="reload-form">' in r.text


def test_a_foreign_referrer_is_not_offered_as_the_form(client):
    r = client.post(
        "/runs/new", data={"csrf_token": "x"}, headers={"Referer": "https://evil.example/"}
    )
    assert r.status_code == 400 and "evil.example" not in r.text


def test_the_favicon_is_served_to_everyone_and_linked_from_every_page(app, client):
    stranger = app.test_client()
    r = stranger.get("/favicon.ico")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert r.data.startswith(b"<svg")
    assert '<link rel="icon" type="image/svg+xml" href="/static/favicon.svg">' in (
        stranger.get("/login").text
    )
    assert 'rel="icon"' in client.get("/runs").text
    assert client.get("/static/favicon.svg").status_code == 200


def test_the_login_form_with_a_stale_token_says_to_reload_it(app):
    c = app.test_client()
    csrf_token(c.get("/login").text)
    r = c.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": "x"})
    assert r.status_code == 400 and "Reload the form" in r.text
