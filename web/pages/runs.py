"""Runs: status, progress and ETA, the bound and key settings; sort, filter, search, pages."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from shared.db import read_scope
from web import args
from web.errors import QueryError
from web.pages import bp
from web.queries.runs import KEY_SETTINGS, RunQuery, filter_options, list_runs


@bp.get("/")
def index():
    return redirect(url_for("pages.runs"))


@bp.get("/runs")
def runs():
    try:
        rq = args.run_query(request.args)
        error = None
    except QueryError as exc:
        rq, error = RunQuery(), str(exc)
    with read_scope() as s:
        page = list_runs(s, rq)
        options = filter_options(s)
    return render_template(
        "runs.html",
        page=page,
        rq=rq,
        options=options,
        error=error,
        key_settings=KEY_SETTINGS,
    )
