"""The Flask dashboard and JSON API. Reads the database, submits through `shared.jobs`;
never imports torch. `create_app()` is the WSGI factory (`gunicorn 'web:create_app()'`)."""

from web.app import create_app

__all__ = ["create_app"]
