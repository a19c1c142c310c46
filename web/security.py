"""Response headers and session-cookie settings that keep the dashboard hard to abuse.

    security.init_app(app, settings)     # from the app factory

- Content-Security-Policy: scripts, styles, images and requests from this origin only. The
  pages' scripts live in web/static (data reaches them through `data-` attributes and
  `<script type="application/json">` blocks, which are never executed), so no inline
  script is needed, and none would run if one were injected. Inline `style=` attributes
  are not allowed either: the pages style through app.css, and scripts set styles through
  the CSSOM (`el.style.width`), which CSP does not govern. So `'unsafe-inline'` appears
  nowhere.
- X-Frame-Options DENY and `frame-ancestors 'none'`: no other site may frame a page
  (clickjacking on the cancel and retry buttons).
- X-Content-Type-Options nosniff; Referrer-Policy same-origin (run names and filters in
  URLs stay on this site).
- The session cookie: HttpOnly, SameSite=Lax, Secure when SESSION_COOKIE_SECURE is set
  (the dashboard is served over HTTPS), living SESSION_LIFETIME_HOURS.

`RequestHandler` makes Werkzeug's own server (`text-diffusion up`) say `Server:
text-diffusion` instead of naming its version and Python's. gunicorn sends
`Server: gunicorn`, with no version.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Response
from werkzeug.serving import WSGIRequestHandler

from shared.settings import Settings

SERVER_NAME = "text-diffusion"

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class RequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler without its version or Python's in the Server header."""

    def version_string(self) -> str:
        return SERVER_NAME


def _add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask, settings: Settings) -> None:
    """Cookie settings from `settings`, and the headers on every response (errors too)."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_lifetime_hours),
    )
    app.after_request(_add_headers)
