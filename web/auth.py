"""Login for the pages, bearer tokens for the API.

One account, `admin`. Its password is ADMIN_PASSWORD, or, when that is unset, one generated
on first start, printed once, and kept only as a hash in DATA_DIR/admin_password.hash.
The API also takes `Authorization: Bearer TOKEN` with a token from API_TOKENS; a browser
that is logged in may call the API with its session cookie, and then unsafe methods need
the CSRF token in an `X-CSRFToken` header (the pages' scripts send it).

Failed logins are throttled (Flask-Limiter), per client address and per account name:
past LOGIN_FAILURES_PER_CLIENT or LOGIN_FAILURES_PER_ACCOUNT failures in
LOGIN_WINDOW_SECONDS, every login is answered 429 (the right password too) until the window
passes. Only failures count. The counts live in Redis when REDIS_URL is set, so every web
server shares them, else in the process's memory. Behind a reverse proxy every client has
the proxy's address: the per-client limit then throttles everyone together.
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
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter, RateLimitExceeded
from flask_wtf.csrf import validate_csrf
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import ValidationError

from shared.settings import Settings

bp = Blueprint("auth", __name__)

USERNAME = "admin"
# Endpoints anyone may reach: the login page itself, health checks, assets, the API's
# description (it holds no data).
PUBLIC = {"auth.login", "static", "vendor", "healthz", "favicon", "api.openapi"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class ApiAuthError(Exception):
    """401/403 from the API guard; `web.api` turns it into its JSON error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    app.extensions["td_password_hash"] = _password_hash(settings)
    app.extensions["td_api_tokens"] = settings.api_token_set
    app.before_request(_guard)
    _throttle_logins(app, settings)


def _limit_storage(settings: Settings) -> str:
    """Redis when the deployment has one (shared by every web server), else memory."""
    url = settings.redis_url
    if url is None:
        return "memory://"
    if url.startswith("unix://"):
        return "redis+" + url  # the limits library's name for a Redis socket
    return url


def _client() -> str:
    return "client:" + (request.remote_addr or "unknown")


def _account() -> str:
    # Clipped: a guesser's made-up names cannot make long keys.
    return "account:" + request.form.get("username", "")[:64]


def _not_login() -> bool:
    return request.endpoint != "auth.login"


def _failed(response) -> bool:
    return response.status_code == 401


def _throttle_logins(app: Flask, settings: Settings) -> None:
    """A limiter of this app's own (its storage follows this app's settings) on POST /login."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", _limit_storage(settings))
    app.config.setdefault("RATELIMIT_KEY_PREFIX", f"{settings.redis_key_prefix}td-login")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter = Limiter(_client, app=app)
    window = settings.login_window_seconds
    for key, count in (
        (_client, settings.login_failures_per_client),
        (_account, settings.login_failures_per_account),
    ):
        limiter.limit(
            f"{count} per {window} second",
            key_func=key,
            methods=["POST"],
            exempt_when=_not_login,
            deduct_when=_failed,
        )(bp)
    app.extensions["td_login_window"] = window
    app.register_error_handler(RateLimitExceeded, _too_many_logins)


def _too_many_logins(exc: RateLimitExceeded):
    minutes = -(-current_app.extensions["td_login_window"] // 60)
    error = (
        "Too many failed logins from this address or for this account: logins are refused "
        f"for up to {minutes} minute{'s' if minutes > 1 else ''}."
    )
    return render_template("login.html", error=error), 429


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


def _guard():
    if request.endpoint in PUBLIC or request.endpoint is None:
        return None
    is_api = request.blueprint == "api"
    token = _bearer_token() if is_api else None
    if token is not None:
        if not _token_ok(token):
            raise ApiAuthError(401, "invalid API token")
        g.auth = "token"
        return None
    if session.get("user") == USERNAME:
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
    error = None
    if request.method == "POST":
        user = request.form.get("username", "")
        password = request.form.get("password", "")
        if user == USERNAME and check_password_hash(
            current_app.extensions["td_password_hash"], password
        ):
            session.clear()
            session["user"] = USERNAME
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
        error = "Wrong username or password."
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
