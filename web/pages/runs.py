"""Runs: status, progress and ETA, the bound and key settings; sort, filter, search, pages."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from shared.db import read_scope
from web import queries
from web.pages import bp


@bp.get("/")
def index():
    return redirect(url_for("pages.runs"))


@bp.get("/runs")
def runs():
    try:
        rq = queries.RunQuery.from_args(request.args)
        error = None
    except queries.QueryError as exc:
        rq, error = queries.RunQuery(), str(exc)
    with read_scope() as s:
        page = queries.list_runs(s, rq)
        options = queries.filter_options(s)
    return render_template(
        "runs.html",
        page=page,
        rq=rq,
        options=options,
        error=error,
        key_settings=queries.KEY_SETTINGS,
    )
