"""The dashboard's errors and how each is answered: JSON under /api/, the error page elsewhere.

Views and queries raise typed errors; nothing decides a status by reading a message:

    QueryError   a bad query parameter          400, `fields` names it
    NotFound     no object with that id         404
    ApiError     any status, with `fields`      as given
    SpecError    a spec value                   422, `fields` names it
    JobNotFound  (shared.errors) no such job    404
    JobError     (shared.errors) the job's state 409

    (SQLAlchemy) the database cannot be reached    503, Retry-After

Every JSON error is {"error": {"status", "message", "fields": [{"field", "reason"}]}}.
"""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from shared.contracts.specs import SpecError
from shared.errors import JobError, JobNotFound

log = logging.getLogger(__name__)

# Seconds a client is told to wait when the database is down: a restart or a fail-over
# takes a few; a client that retries sooner only adds load.
DATABASE_RETRY_AFTER_S = 5
# SQLite's codes for "cannot get at the database now" (a busy writer past the busy
# timeout, a missing or unreadable file); its others (a syntax error) are bugs, not outages.
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")


class ApiError(Exception):
    """An error answered with `status`; `fields` names what was wrong."""

    def __init__(self, status: int, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or []


class QueryError(ValueError):
    """A bad query parameter: `field` names it (answered 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LookupError):
    """No object with that id (answered 404)."""


def spec_error(exc: SpecError) -> ApiError:
    """A `SpecError` from `shared.submit` as a 422 naming the field under `spec.`."""
    return ApiError(422, str(exc), [{"field": f"spec.{exc.field}", "reason": exc.message}])


def error_response(
    status: int,
    message: str,
    fields: list[dict[str, str]] | None = None,
    *,
    back: str | None = None,
):
    """JSON under /api/, the error page elsewhere (a page that hit a missing run, say);
    `back` is a page of this site to offer a link to (the form to reload)."""
    if not request.path.startswith("/api/"):
        return render_template("error.html", status=status, message=message, back=back), status
    body = {"error": {"status": status, "message": message, "fields": fields or []}}
    return jsonify(body), status


# A form carries the CSRF token of the session it was rendered in: a tab left open across a
# log-out or a server's new key sends a stale one, and loading the form again cures it.
CSRF_ADVICE = "Reload the form and send it again."


def database_unavailable(exc: Exception) -> bool:
    """Whether `exc` says the database cannot be reached now (rather than a bug): a lost or
    refused connection, a full pool, PostgreSQL's operational errors, SQLite busy/locked."""
    if isinstance(exc, InterfaceError | PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if exc.connection_invalidated or not isinstance(exc.orig, sqlite3.Error):
        return True  # PostgreSQL reports syntax and data errors as other classes
    return getattr(exc.orig, "sqlite_errorname", "").startswith(_SQLITE_UNAVAILABLE)


def with_retry_after(response, seconds: int):
    response.headers["Retry-After"] = str(seconds)
    return response


def register(app: Flask) -> None:
    # Imported here: the CLI reads `NotFound` from this module, and the login machinery
    # (sessions, the database) would only slow its error path.
    from web.auth import ApiAuthError

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def _database(exc: Exception):
        if not database_unavailable(exc):
            raise exc  # a bug: Flask's 500, with its traceback in the log
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        log.warning("%s %s: the database is unavailable (%s)", request.method, request.path, reason)
        message = "The database is unavailable; try again in a few seconds."
        response = app.make_response(error_response(503, message))
        return with_retry_after(response, DATABASE_RETRY_AFTER_S)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.fields)

    @app.errorhandler(ApiAuthError)
    def _auth_error(exc: ApiAuthError):
        response = app.make_response(error_response(exc.status, str(exc)))
        if exc.retry_after is not None:
            with_retry_after(response, exc.retry_after)
        return response

    @app.errorhandler(QueryError)
    def _query_error(exc: QueryError):
        return error_response(400, str(exc), [{"field": exc.field, "reason": exc.message}])

    @app.errorhandler(SpecError)
    def _spec_error(exc: SpecError):
        return error_response(422, str(exc), [{"field": exc.field, "reason": exc.message}])

    @app.errorhandler(NotFound)
    @app.errorhandler(JobNotFound)
    def _not_found(exc: LookupError):
        return error_response(404, str(exc))

    @app.errorhandler(JobError)
    def _conflict(exc: JobError):
        return error_response(409, str(exc))

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        referrer = request.referrer or ""
        back = referrer if referrer.startswith(request.host_url) else None
        return error_response(400, f"{exc.description} {CSRF_ADVICE}", back=back)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        """Every error status gets the app's page (or JSON under /api/): `/runs/abc`, which
        no route matches, looks like `/runs/999`, which the view answers. The exception's
        headers (Allow, WWW-Authenticate) are kept."""
        if exc.code is None or exc.code < 400:
            return exc
        response = app.make_response(error_response(exc.code, exc.description or exc.name))
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response
