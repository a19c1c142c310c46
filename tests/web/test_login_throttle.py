"""Guessing is throttled without handing anyone a lock-out: failed logins per address and per
(address, account), a device cookie for browsers that logged in before, wrong API tokens
per address. The windows are stepped with the throttle's clock, never slept through."""

from __future__ import annotations

import uuid

import pytest

from tests.jobs.helpers import reset_process_caches
from tests.services import redis_url, require_or_skip
from tests.web.conftest import PASSWORD, TOKEN, csrf_token

WINDOW = 300


class Clock:
    """The throttle's time, stepped by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0 * WINDOW  # the start of a window

    def __call__(self) -> float:
        return self.now


def _login(client, password: str, user: str = "admin", ip: str = "10.0.0.1"):
    env = {"REMOTE_ADDR": ip}
    token = csrf_token(client.get("/login", environ_base=env).text)
    return client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token},
        environ_base=env,
    )


def _app(monkeypatch, **settings):
    for key, value in {"LOGIN_WINDOW_SECONDS": str(WINDOW), **settings}.items():
        monkeypatch.setenv(key, value)
    reset_process_caches()
    from web import create_app

    app = create_app({"TESTING": True})
    clock = Clock()
    app.extensions["td_throttle"].clock = clock
    return app, clock


def test_failures_from_one_address_throttle_that_address_until_the_window_ends(
    web_env, monkeypatch
):
    app, clock = _app(monkeypatch, LOGIN_FAILURES_PER_CLIENT="5")
    c = app.test_client()
    assert [_login(c, "wrong").status_code for _ in range(7)] == [401] * 5 + [429] * 2
    r = _login(c, PASSWORD)
    assert r.status_code == 429  # even the right password, until the window ends
    assert "Too many failed logins" in r.text and "up to 5 minutes." in r.text
    assert r.headers["Retry-After"] == str(WINDOW)
    assert c.get("/api/runs").status_code == 401
    clock.now += WINDOW - 1
    assert _login(c, PASSWORD).headers["Retry-After"] == "1"
    clock.now += 1
    assert _login(c, PASSWORD).status_code == 302


def test_failures_from_other_addresses_never_lock_the_owner_out(web_env, monkeypatch):
    """The lock-out the first round handed out: failing ten times from anywhere locked the
    admin out for everyone. Nothing is counted per account alone now."""
    app, _ = _app(monkeypatch, LOGIN_FAILURES_PER_CLIENT="3")
    c = app.test_client()
    for i in range(5):  # a botnet: every address fails past its own limit
        for _ in range(4):
            _login(c, "wrong", ip=f"10.1.{i}.1")
    assert _login(c, "wrong", ip="10.1.0.1").status_code == 429
    # The owner, from an address of their own, in a browser that never logged in before.
    owner = app.test_client()
    assert _login(owner, PASSWORD, ip="10.9.0.1").status_code == 302
    assert owner.get("/api/runs").status_code == 200


def test_an_address_is_throttled_over_all_account_names(web_env, monkeypatch):
    app, _ = _app(monkeypatch, LOGIN_FAILURES_PER_CLIENT="100", LOGIN_FAILURES_PER_ADDRESS="4")
    c = app.test_client()
    statuses = [_login(c, "x", user=f"user{i}").status_code for i in range(6)]
    assert statuses == [401] * 4 + [429] * 2
    assert _login(c, PASSWORD).status_code == 429
    assert _login(c, PASSWORD, ip="10.0.0.2").status_code == 302


def test_a_browser_that_logged_in_before_keeps_its_own_allowance(web_env, monkeypatch):
    """OWASP's device cookies: a guesser behind the owner's proxy (the same address)
    exhausts the address, and the owner's browser still logs in."""
    app, _ = _app(monkeypatch, LOGIN_FAILURES_PER_CLIENT="3", LOGIN_FAILURES_PER_DEVICE="2")
    owner = app.test_client()
    assert _login(owner, PASSWORD).status_code == 302
    assert owner.get_cookie("td_device", path="/login") is not None
    assert owner.post("/logout", data={"csrf_token": csrf_token(owner.get("/runs").text)})

    guesser = app.test_client()  # same address, no device cookie
    assert [_login(guesser, "wrong").status_code for _ in range(4)] == [401] * 3 + [429]
    assert _login(guesser, PASSWORD).status_code == 429
    assert _login(owner, "typo").status_code == 401  # counted on the device, not the address
    assert _login(owner, PASSWORD).status_code == 302

    # A forged or foreign device cookie is no device cookie.
    forger = app.test_client()
    forger.set_cookie("td_device", "forged.value", path="/login")
    assert _login(forger, PASSWORD).status_code == 429
    # A device that fails past its own allowance is throttled by its address again.
    assert [_login(owner, "typo").status_code for _ in range(2)] == [401, 401]
    assert _login(owner, PASSWORD).status_code == 429


def test_successful_logins_are_not_counted(web_env, monkeypatch):
    app, _ = _app(monkeypatch, LOGIN_FAILURES_PER_CLIENT="3")
    c = app.test_client()
    for _ in range(6):
        assert _login(c, PASSWORD).status_code == 302


def test_wrong_api_tokens_are_throttled_per_address(web_env, monkeypatch):
    app, clock = _app(monkeypatch, TOKEN_FAILURES_PER_CLIENT="5")
    c = app.test_client()

    def get(token: str, ip: str = "10.0.0.1"):
        headers = {"Authorization": f"Bearer {token}"}
        return c.get("/api/runs", headers=headers, environ_base={"REMOTE_ADDR": ip})

    assert [get(f"guess-{i}").status_code for i in range(7)] == [401] * 5 + [429] * 2
    r = get(TOKEN)  # the right token too: a guesser learns nothing past the limit
    assert r.status_code == 429 and r.is_json
    assert r.headers["Retry-After"] == str(WINDOW)
    assert "too many wrong API tokens" in r.json["error"]["message"]
    assert get(TOKEN, ip="10.0.0.2").status_code == 200  # another address is not affected
    for _ in range(10):  # right tokens are never counted
        assert get(TOKEN, ip="10.0.0.3").status_code == 200
    clock.now += WINDOW
    assert get(TOKEN).status_code == 200


def test_throttle_is_kept_in_redis_and_shared_by_web_servers(web_env, monkeypatch):
    url = require_or_skip("Redis", redis_url())
    app_a, clock = _app(
        monkeypatch,
        LOGIN_FAILURES_PER_CLIENT="4",
        REDIS_URL=url,
        REDIS_KEY_PREFIX=f"td-test-{uuid.uuid4().hex[:8]}:",
    )
    from web import create_app

    app_b = create_app({"TESTING": True})
    app_b.extensions["td_throttle"].clock = clock
    assert [_login(app_a.test_client(), "wrong").status_code for _ in range(2)] == [401, 401]
    assert [_login(app_b.test_client(), "wrong").status_code for _ in range(3)] == [401, 401, 429]
    assert _login(app_a.test_client(), PASSWORD).status_code == 429


@pytest.mark.parametrize("setting", ["LOGIN_FAILURES_PER_CLIENT", "TOKEN_FAILURES_PER_CLIENT"])
def test_throttle_settings_are_bounded(setting):
    from shared.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=setting):
        Settings.from_env({setting: "0"})
