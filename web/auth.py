"""Login for the pages, bearer tokens for the API.

One account, `admin`. Its password is ADMIN_PASSWORD, or, when that is unset, one generated
on first start, printed once, and kept only as a hash in DATA_DIR/admin_password.hash.
The API also takes `Authorization: Bearer TOKEN` with a token from API_TOKENS; a browser
that is logged in may call the API with its session cookie, and then unsafe methods need
the CSRF token in an `X-CSRFToken` header (the pages' scripts send it).

A login is a server-side session (`web.sessions`): logging out, or a new password, ends
every copy of its cookie.

Guessing is throttled (`web.throttle`, counted in Redis when REDIS_URL is set, so every
web server shares the counts, else in the process's memory), only failures counting, per
LOGIN_WINDOW_SECONDS:
- a login from an address: LOGIN_FAILURES_PER_CLIENT failures for one account name, and
  LOGIN_FAILURES_PER_ADDRESS over all names; past either, that address's logins (the right
  password too) are answered 429 until the window ends. Nothing is counted per account
  alone, so failures from other addresses never lock the owner out;
- a browser that logged in before (its device cookie, `web.devices`) is counted apart
  from its address, LOGIN_FAILURES_PER_DEVICE: a guesser behind the same proxy cannot
  lock it out either;
- wrong API tokens from an address: TOKEN_FAILURES_PER_CLIENT, then 429 for every token
  from it until the window ends.
Behind a reverse proxy every client has the proxy's address: the address limits then
throttle everyone behind it together (device cookies keep the owner's browser apart).
"""

from __future__ import annotations

import hmac
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import validate_csrf
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import ValidationError

from shared.settings import Settings
from web import devices, sessions
from web.throttle import Key, Throttle, storage_uri

bp = Blueprint("auth", __name__)

USERNAME = "admin"
# Endpoints anyone may reach: the login page itself, health checks, assets, the API's
# description (it holds no data).
PUBLIC = {"auth.login", "static", "vendor", "healthz", "favicon", "api.openapi"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class ApiAuthError(Exception):
    """401/403/429 from the API guard; `web.errors` turns it into its JSON error shape
    (with a Retry-After header when `retry_after` is set)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def password_file(settings: Settings) -> Path:
    return settings.data_dir / "admin_password.hash"


def ensure_password(settings: Settings, *, new: bool = False) -> str | None:
    """Make sure the admin password is set: return a password generated now (its hash is
    kept in `password_file`), or None if one was already set (that file, or ADMIN_PASSWORD).

    `new`: replace the stored one with a new password (`text-diffusion up --new-password`);
    a ValueError if ADMIN_PASSWORD sets it instead.
    """
    if settings.admin_password:
        if new:
            raise ValueError(
                "ADMIN_PASSWORD sets the password: change it there, not with --new-password"
            )
        return None
    path = password_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    if new:  # whole or not at all: a server starting now reads the old hash or the new
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with tmp.open("x") as f:
            tmp.chmod(0o600)
            f.write(generate_password_hash(password))
        tmp.replace(path)
        return password
    try:
        with path.open("x") as f:  # exclusive: exactly one starting server prints it
            path.chmod(0o600)
            f.write(generate_password_hash(password))
    except FileExistsError:
        return None
    return password


def _password_hash(settings: Settings) -> str:
    """The admin password's hash, generating (and printing) a password on first start."""
    if settings.admin_password:
        return generate_password_hash(settings.admin_password)
    path = password_file(settings)
    password = ensure_password(settings)
    if password is not None:
        print(
            f"\n  Dashboard login: {USERNAME} / {password}\n"
            f"  (printed once; only its hash is kept in {path}. Set ADMIN_PASSWORD to choose\n"
            f"  your own, or run `text-diffusion up --new-password` for a new one.)\n",
            file=sys.stderr,
            flush=True,
        )
    return path.read_text().strip()


def init_app(app: Flask, settings: Settings) -> None:
    password_hash = _password_hash(settings)
    app.extensions["td_password_hash"] = password_hash
    # The tag every session is made under: a new password (or secret key) ends them all.
    app.extensions["td_password_tag"] = sessions.password_tag(
        app.secret_key, settings.admin_password or password_hash
    )
    app.extensions["td_api_tokens"] = settings.api_token_set
    app.extensions["td_throttle"] = Throttle(
        storage_uri(settings),
        prefix=f"{settings.redis_key_prefix}td-auth:",
        window=settings.login_window_seconds,
    )
    app.extensions["td_auth_settings"] = settings
    app.before_request(_guard)
    app.context_processor(lambda: {"logged_in": _shows_nav})


def _settings() -> Settings:
    return current_app.extensions["td_auth_settings"]


def _throttle() -> Throttle:
    return current_app.extensions["td_throttle"]


def _address() -> str:
    return request.remote_addr or "unknown"


def _login_limits(account: str) -> list[tuple[Key, int]]:
    """The counters a login attempt for `account` is held to: its device cookie's own, if
    this browser logged in as `account` before and that cookie is within its allowance,
    else its address's (for this account, and over all)."""
    settings = _settings()
    device = devices.device_of(request, account)
    if device is not None:
        own = (("device", account, device), settings.login_failures_per_device)
        if _throttle().wait(*own) == 0:
            return [own]
    address = _address()
    return [
        (("client", address, account), settings.login_failures_per_client),
        (("address", address), settings.login_failures_per_address),
    ]


def _too_many_logins(wait: int):
    minutes = -(-wait // 60)
    error = (
        "Too many failed logins from this address: logins are refused "
        f"for up to {minutes} minute{'s' if minutes > 1 else ''}."
    )
    response = make_response(render_template("login.html", error=error), 429)
    response.headers["Retry-After"] = str(wait)
    return response


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _token_ok(token: str) -> bool:
    # Compare against every token in constant time: no early exit that leaks which matched.
    ok = False
    for known in current_app.extensions["td_api_tokens"]:
        ok |= hmac.compare_digest(token.encode(), known.encode())
    return ok


def _check_token(token: str) -> None:
    """A right token passes; a wrong one is counted against the address, and an address
    past its allowance is refused (429) whatever it sends, so guessing learns nothing."""
    key = ("token", _address())
    limit = _settings().token_failures_per_client
    wait = _throttle().wait(key, limit)
    if wait:
        raise ApiAuthError(
            429, f"too many wrong API tokens from this address; retry in {wait} s", wait
        )
    if not _token_ok(token):
        _throttle().fail(key)
        raise ApiAuthError(401, "invalid API token")


def _logged_in() -> bool:
    return sessions.current_user(current_app.extensions["td_password_tag"]) == USERNAME


def _shows_nav() -> bool:
    """For templates: whether to show the navigation (never raises: the error page of an
    unreachable database renders it too)."""
    try:
        return _logged_in()
    except SQLAlchemyError:
        return False


def _guard():
    if request.endpoint in PUBLIC or request.endpoint is None:
        return None
    is_api = request.blueprint == "api"
    token = _bearer_token() if is_api else None
    if token is not None:
        _check_token(token)
        g.auth = "token"
        return None
    if _logged_in():
        g.auth = "session"
        if is_api and request.method in UNSAFE:
            try:
                validate_csrf(request.headers.get("X-CSRFToken", ""))
            except ValidationError as exc:
                raise ApiAuthError(
                    403, f"CSRF check failed ({exc}): send the page's token as X-CSRFToken"
                ) from exc
        return None
    if is_api:
        raise ApiAuthError(
            401, "log in, or send 'Authorization: Bearer TOKEN' with a token from API_TOKENS"
        )
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _safe_next(target: str | None) -> str:
    """Only local paths: never redirect a login to another site.

    Browsers read `\\` as `/` and drop tabs and newlines from URLs, so `/\\evil.example`
    and `/\\t/evil.example` would leave the site too: any backslash or control character
    refuses the target.
    """
    if not target:
        return url_for("pages.runs")
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return url_for("pages.runs")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", error=None)
    # Clipped: a guesser's made-up names cannot make long keys or long pages.
    user = request.form.get("username", "")[:64]
    password = request.form.get("password", "")
    limits = _login_limits(user)
    wait = max(_throttle().wait(key, limit) for key, limit in limits)
    if wait:
        return _too_many_logins(wait)
    if user == USERNAME and check_password_hash(
        current_app.extensions["td_password_hash"], password
    ):
        tag = current_app.extensions["td_password_tag"]
        sessions.start(USERNAME, current_app.permanent_session_lifetime, tag)
        response = redirect(_safe_next(request.args.get("next")))
        devices.issue(response, USERNAME, secure=_settings().session_cookie_secure)
        return response
    for key, _ in limits:
        _throttle().fail(key)
    return render_template("login.html", error="Wrong username or password."), 401


@bp.post("/logout")
def logout():
    sessions.end()
    return redirect(url_for("auth.login"))
