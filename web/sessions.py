"""Server-side login sessions: the cookie carries a random id, the database says if it is live.

Flask's session cookie is signed, not revocable: a copy taken before logging out would
work until it expires. So a login stores a row (`shared.models.LoginSession`, keyed by
the SHA-256 of a random id) and the cookie carries the id; every request looks the row up.
Logging out deletes the row, which ends every copy of the cookie; a row made under another
password (its `password_tag`) is refused too, so a new password ends every session.

    sessions.start("admin", lifetime, tag)   # at login: a fresh id (no fixation)
    sessions.current_user(tag)               # per request: "admin" or None
    sessions.end()                           # at logout
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import g, session
from sqlalchemy import delete

from shared.db import read_scope, session_scope
from shared.models import LoginSession, utcnow

SID = "sid"


def password_tag(secret_key: str, password_source: str) -> str:
    """A 32-bit tag of the password: it changes when the password does, and it is far too
    short to confirm a guess (one in four billion of all strings share it)."""
    mac = hmac.new(secret_key.encode(), b"password:" + password_source.encode(), "sha256")
    return mac.hexdigest()[:8]


def _row_id(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def start(username: str, lifetime: timedelta, tag: str) -> None:
    """Log `username` in: a new row and a new cookie (whatever the old cookie held is
    dropped, so an id planted before login is never the one used after it)."""
    sid = secrets.token_urlsafe(32)
    now = utcnow()
    with session_scope() as s:
        s.execute(delete(LoginSession).where(LoginSession.expires_at < now))
        s.add(
            LoginSession(
                id=_row_id(sid),
                username=username,
                password_tag=tag,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    session.clear()
    session[SID] = sid
    session.permanent = True


def current_user(tag: str) -> str | None:
    """The user this request's cookie is logged in as, or None (read once per request)."""
    if "td_user" not in g:
        g.td_user = _lookup(session.get(SID), tag)
    return g.td_user


def _lookup(sid: object, tag: str) -> str | None:
    if not isinstance(sid, str) or not sid:
        return None
    with read_scope() as s:
        row = s.get(LoginSession, _row_id(sid))
        if row is None or row.expires_at <= utcnow():
            return None
        if not hmac.compare_digest(row.password_tag, tag):
            return None
        return row.username


def end() -> None:
    """Log out: delete this cookie's row (every copy of it stops working), clear it."""
    sid = session.get(SID)
    if isinstance(sid, str) and sid:
        with session_scope() as s:
            s.execute(delete(LoginSession).where(LoginSession.id == _row_id(sid)))
    session.clear()
    g.pop("td_user", None)


def end_all(username: str) -> int:
    """End every session of `username` (e.g. after its password is reset); the count."""
    with session_scope() as s:
        result = s.execute(delete(LoginSession).where(LoginSession.username == username))
        return result.rowcount or 0
