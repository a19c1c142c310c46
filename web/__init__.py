"""The Flask dashboard (never imports torch).

For now one page listing runs and their jobs; the dashboard proper comes later. Views read
the database only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, render_template_string
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Job, Run

bp = Blueprint("runs", __name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>text-diffusion</title>
<style>body{font:14px system-ui;margin:2em}td,th{padding:.3em .8em;text-align:left}</style>
</head><body>
<h1>Runs</h1>
{% if runs %}<table>
<tr><th>id</th><th>name</th><th>status</th><th>step</th><th>ppl bound</th><th>created</th></tr>
{% for r in runs %}<tr><td>{{ r.id }}</td><td>{{ r.name }}</td><td>{{ r.status }}</td>
<td>{{ r.step }}/{{ r.max_steps }}</td>
<td>{{ '%.1f'|format(r.summary.ppl_bound) if r.summary.ppl_bound else '' }}</td>
<td>{{ r.created_at.strftime('%Y-%m-%d %H:%M') }}</td></tr>{% endfor %}
</table>{% else %}<p>No runs yet: <code>text-diffusion submit train --preset tiny</code></p>
{% endif %}
<h2>Jobs</h2>
<table><tr><th>id</th><th>kind</th><th>status</th><th>progress</th><th>attempts</th>
<th>worker</th></tr>
{% for j in jobs %}<tr><td>{{ j.id }}</td><td>{{ j.kind }}</td><td>{{ j.status }}</td>
<td>{{ '%d%%'|format(j.progress * 100) }}</td><td>{{ j.attempts }}</td>
<td>{{ j.worker or '' }}</td></tr>{% endfor %}
</table></body></html>"""


@bp.get("/")
def index() -> str:
    with session_scope() as s:
        runs = s.scalars(select(Run).order_by(Run.id.desc()).limit(100)).all()
        jobs = s.scalars(select(Job).order_by(Job.id.desc()).limit(100)).all()
    return render_template_string(PAGE, runs=runs, jobs=jobs)


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"ok": True}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The web app; `test_config` overrides Flask config (tests)."""
    app = Flask(__name__)
    app.config.from_mapping(test_config or {})
    app.register_blueprint(bp)
    return app
