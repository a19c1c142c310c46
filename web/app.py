"""The app factory: configuration, security, blueprints.

    app = create_app()                      # settings from the environment
    app = create_app({"TESTING": True})     # Flask config overrides (tests)

Pages live in `web.pages`, the JSON API in `web.api` (described by `web.openapi`), login
in `web.auth`. Views are thin: reading goes through `web.queries`, writing through
`shared.jobs`, so the pages and the API cannot disagree.
"""

from __future__ import annotations

import gc
import logging
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, abort, request, send_from_directory
from flask_wtf.csrf import CSRFProtect

from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
# The chart library, installed by `npm ci --prefix web` at set-up (never committed).
VENDOR = {
    "uplot.js": HERE / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js",
    "uplot.css": HERE / "node_modules" / "uplot" / "dist" / "uPlot.min.css",
}
# Request bodies above this are refused with 413 before a view sees them.
MAX_CONTENT_LENGTH = 1 << 20

csrf = CSRFProtect()


def _secret_key(settings: Settings) -> str:
    """SECRET_KEY, else a random key kept in DATA_DIR/secret_key (created once, 0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x") as f:  # exclusive: one of several starting servers writes it
            path.chmod(0o600)
            f.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    return path.read_text().strip()


def datasets_upload_limit() -> None:
    """Raise the body limit from MAX_CONTENT_LENGTH to MAX_UPLOAD_MB for uploads only."""
    if request.endpoint == "pages.datasets" and request.method == "POST":
        request.max_content_length = (get_settings().max_upload_mb + 1) << 20


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from web import api, api_sweeps, auth, filters, pages, security  # noqa: F401 (routes)

    settings = get_settings()
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=_secret_key(settings),
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session, so a tab left open still works
        JSON_SORT_KEYS=False,
    )
    security.init_app(app, settings)
    app.config.from_mapping(test_config or {})
    # Before the CSRF check, which reads the form: the upload page accepts larger bodies.
    app.before_request(datasets_upload_limit)
    csrf.init_app(app)
    auth.init_app(app, settings)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    filters.register(app)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the API checks CSRF itself, and only for cookie sessions
    from web.errors import register as register_errors

    register_errors(app)

    @app.get("/vendor/<name>")
    def vendor(name: str):
        path = VENDOR.get(name)
        if path is None:
            abort(404)
        if not path.is_file():
            abort(404, f"{name} is not installed: run `npm ci --prefix web` (scripts/setup.sh)")
        return send_from_directory(path.parent, path.name, max_age=86400)

    @app.get("/favicon.ico")
    def favicon():
        """Browsers ask every site for /favicon.ico: the icon in static/ (public)."""
        return app.send_static_file("favicon.svg")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    app.jinja_env.globals["charts_installed"] = all(p.is_file() for p in VENDOR.values())
    if test_config is None:  # a server's app (gunicorn, `up`), made once per process
        _freeze_startup_objects()
    return app


def _freeze_startup_objects() -> None:
    """Keep the garbage collector from scanning what every request leaves alone.

    The app, its modules (SQLAlchemy, pydantic, Optuna...) and their caches are some
    hundreds of thousands of objects that live as long as the process; a full collection
    scans them all, and a page that builds many objects (a sweep of 500 trials) triggers
    one now and then: tens of milliseconds at the 95th percentile (bench/dashboard_load.py).
    Collected once, then frozen (`gc.freeze`), they are no longer scanned.
    """
    gc.collect()
    gc.freeze()
