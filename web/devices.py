"""Device cookies (OWASP's scheme against lock-out): a browser that has logged in before
keeps its own allowance of failed logins.

A successful login sets `td_device`, a cookie signed with the app's secret key that names
the account and a random nonce. A later login attempt for that account from a browser
with a valid cookie is counted against that cookie alone (its nonce), not against its
address: failures from elsewhere, even from behind the same proxy, cannot lock the owner's
browser out. A cookie that fails too often loses that standing and is throttled by address
like any other client. The cookie is only sent to /login, and only proves that this
browser logged in before; it logs nobody in.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import Request, Response, current_app
from itsdangerous import BadSignature, URLSafeSerializer

COOKIE = "td_device"
# Long-lived: its point is to be there the next time the owner logs in.
LIFETIME = timedelta(days=180)
_SALT = "td-device-cookie"


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt=_SALT)


def device_of(request: Request, account: str) -> str | None:
    """The nonce of this browser's valid device cookie for `account`, or None."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        payload = _signer().loads(raw)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("account") != account:
        return None
    nonce = payload.get("nonce")
    return nonce if isinstance(nonce, str) and nonce else None


def issue(response: Response, account: str, *, secure: bool) -> None:
    """Give this browser a fresh device cookie for `account` (after a successful login)."""
    value = _signer().dumps({"account": account, "nonce": secrets.token_urlsafe(16)})
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(LIFETIME.total_seconds()),
        path="/login",
        secure=secure,
        httponly=True,
        samesite="Strict",
    )
