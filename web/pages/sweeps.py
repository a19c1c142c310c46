"""Sweeps: the list with a form to create one, and a sweep's page.

    GET  /sweeps                    the sweeps, and the form (the sweep file, in YAML)
    GET  /sweeps?from_run=7         ... the form filled with a sweep around run 7
    POST /sweeps                    validate (SweepSpec), store, queue the first trials
    GET  /sweeps/<id>               best so far, parallel coordinates, importance, trials
    POST /sweeps/<id>/<action>      pause, resume, stop, retry-failed, extend

The charts and the trials table are drawn by static/sweep.js from /api/sweeps/<id>, and
fetched again every few seconds while the sweep runs.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from shared import sweeps
from shared.contracts.limits import MAX_ID
from shared.contracts.specs import SpecError
from shared.contracts.sweep import METRIC_HELP, SweepSpec, sweep_around_run
from shared.db import read_scope
from web import args
from web.errors import NotFound
from web.pages import bp
from web.queries.runs import get_run
from web.queries.sweeps import list_sweeps, sweep_detail

MAX_FILE_CHARS = 20_000
POLL_MS = 4000
EXAMPLE = """\
name: tiny-lr
base:
  preset: tiny
  max_steps: 200
  eval_every: 50
method: tpe            # grid | random | tpe
metric: {name: val_nll, goal: minimize}   # or mauve, judge_ppl_matched: judged samples
parameters:
  lr: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}
  warmup_steps: {values: [0, 10, 50]}
  masking.mode: {values: [uniform, grid]}
run_cap: 12
concurrency: 2
seeds: 1
early_terminate: {type: hyperband, min_iter: 1, eta: 3}
"""
ACTIONS = {
    "pause": sweeps.pause,
    "resume": sweeps.resume,
    "stop": sweeps.stop,
    "retry-failed": sweeps.retry_failed,
}


def _render_list(text: str, errors: list[tuple[str, str]], status: int = 200):
    with read_scope() as s:
        rows = list_sweeps(s)
    return (
        render_template("sweeps.html", sweeps=rows, text=text, errors=errors, example=EXAMPLE),
        status,
    )


@bp.get("/sweeps")
def sweeps_list():
    """The list and the form: the example file, or (`?from_run=ID`) a sweep whose base is
    that run's spec, searching its learning rate."""
    if "from_run" not in request.args:
        return _render_list(EXAMPLE, [])
    run_id = args.int_arg(request.args, "from_run", 0, 1, MAX_ID)
    with read_scope() as s:
        run = get_run(s, run_id)
        name, spec = run.name, dict(run.spec or {})
    return _render_list(_yaml(sweep_around_run(name, spec), f"# a sweep around run {run_id}"), [])


def _yaml(data: dict, comment: str) -> str:
    import yaml

    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=88)
    return f"{comment}: edit its parameters, then create it\n{text}"


def parse_file(text: str) -> SweepSpec:
    """The form's text as a SweepSpec; ValueError with (field, reason) pairs if not."""
    import yaml

    if len(text) > MAX_FILE_CHARS:
        raise ValueError([("file", f"at most {MAX_FILE_CHARS} characters")])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError([("file", f"not YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise ValueError([("file", "expected a mapping (name, parameters, ...) at the top")])
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ValueError(
            [
                (
                    ".".join(str(p) for p in e["loc"]) or "file",
                    e["msg"].removeprefix("Value error, "),
                )
                for e in exc.errors()
            ]
        ) from None


@bp.post("/sweeps")
def sweeps_create():
    text = request.form.get("file", "")
    try:
        spec = parse_file(text)
        sweep_id, job_ids = sweeps.create(spec)
    except ValueError as exc:
        if isinstance(exc, SpecError):
            return _render_list(text, [(f"base.{exc.field}", exc.message)], 422)
        return _render_list(text, exc.args[0], 422)
    flash(f"Sweep {sweep_id} created; its first {len(job_ids)} runs are queued.", "ok")
    return redirect(url_for("pages.sweep", sweep_id=sweep_id))


@bp.get("/sweeps/<int:sweep_id>")
def sweep(sweep_id: int):
    with read_scope() as s:
        data = sweep_detail(s, sweep_id)
    if data is None:
        raise NotFound(f"no sweep with id {sweep_id}")
    return render_template("sweep.html", sweep=data, poll_ms=POLL_MS, metric_help=METRIC_HELP)


@bp.post("/sweeps/<int:sweep_id>/<action>")
def sweep_action(sweep_id: int, action: str):
    back = redirect(url_for("pages.sweep", sweep_id=sweep_id))
    try:
        if action == "extend":
            raw = request.form.get("trials", "").strip()
            if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 10_000):
                flash("trials: a whole number from 1 to 10000", "error")
                return back
            sweeps.extend(sweep_id, int(raw))
        elif action in ACTIONS:
            ACTIONS[action](sweep_id)
        else:
            raise NotFound(f"no sweep action {action!r}")
    except sweeps.SweepNotFound as exc:
        raise NotFound(str(exc)) from None
    except sweeps.SweepError as exc:
        flash(str(exc), "error")
        return back
    flash(f"Sweep {sweep_id}: {action} done.", "ok")
    return back
