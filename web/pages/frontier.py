"""The frontier page: quality against cost (forward passes, seconds per sample) and quality
against diversity (over temperature, read at human text's diversity), one line per
checkpoint and strategy, the AR checkpoint as the baseline.

    GET  /frontier              the newest frontier, the list of frontiers, the form
    GET  /frontier?name=NAME    that frontier
    POST /frontier              validate (FrontierSpec, `shared.frontier`), queue its jobs

The form is built from FrontierSpec's schema like the other job forms (`web.forms`), with
the checkpoints as checkboxes and the judge as a choice; a refused submit shows every
error at once, listed at the top of the page above the form, each field outlined. The
charts and the table are drawn by static/frontier.js from /api/frontiers/<name>, and
redrawn while the frontier's jobs run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from shared.contracts.frontier import FrontierSpec
from shared.contracts.limits import FRONTIER_NAME
from shared.contracts.options import DEFAULT_JUDGE, NO_JUDGE
from shared.contracts.specs import SpecError
from shared.db import read_scope
from shared.frontier import submit_frontier
from web import forms
from web.api_models import SubmitFrontier
from web.errors import NotFound
from web.pages import bp
from web.queries.frontier import frontier_points, list_frontiers
from web.queries.run import list_checkpoints

SCHEMA = FrontierSpec.model_json_schema()
FIELDS = forms.schema_fields(SCHEMA, kinds={"prompts": "lines"})
JOB_FIELDS = forms.schema_fields(SubmitFrontier.model_json_schema(), skip={"spec"})
LAYOUT = [
    ("source", "Checkpoints", ["checkpoints"]),
    ("grid", "Grid", ["steps", "strategies", "temperatures"]),
    ("samples", "Samples & judge", ["prompts", "length", "num_samples", "judge", "name"]),
    ("batching", "Batching & device", ["batch_size", "device"]),
]
NAMES = [f.name for f in FIELDS] + [f.name for f in JOB_FIELDS] + [k for k, _, _ in LAYOUT]
MAX_CHECKPOINTS_SHOWN = 40


def _fields(checkpoints: list[dict[str, Any]]) -> list[forms.FormField]:
    """The spec's fields, the checkpoints as checkboxes and the judge as a choice of the
    packaged judge, no judge, and every AR checkpoint."""
    shown = checkpoints[:MAX_CHECKPOINTS_SHOWN]
    picks = tuple(
        (
            str(c["id"]),
            f"{c['run_name']} · step {c['step']} (checkpoint {c['id']}, run {c['run_id']}, "
            f"{'AR' if c['objective'] == 'ar' else 'diffusion'})",
        )
        for c in shown
    )
    judges = (
        (DEFAULT_JUDGE, f"{DEFAULT_JUDGE} (packaged, the default)"),
        (NO_JUDGE, "none: no judge perplexity"),
        *(
            (str(c["id"]), f"checkpoint {c['id']} · {c['run_name']} step {c['step']} (AR)")
            for c in shown
            if c["objective"] == "ar"
        ),
    )
    out = []
    for f in FIELDS:
        if f.name == "checkpoints":
            f = dataclasses.replace(f, kind="multi", choices=picks)
        elif f.name == "judge":
            f = dataclasses.replace(
                f,
                kind="choice",
                choices=judges,
                optional=False,
                description="Scores every point; its perplexity is read at human text's "
                "diversity under the same judge. The CLI and API also take a causal model "
                "directory under MODEL_ROOT or a hub name.",
            )
        out.append(f)
    return out


def _defaults(fields: list[forms.FormField]) -> dict[str, Any]:
    data = FrontierSpec(checkpoints=[1]).model_dump(mode="json") | {"checkpoints": []}
    data["judge"] = data["judge"] or NO_JUDGE
    return forms.display_values(fields, data) | forms.display_values(
        JOB_FIELDS, {"queue": None, "priority": 0}
    )


def _parse(fields: list[forms.FormField]) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """(the spec or None, the job's queue and priority, every error by field name)."""
    form = request.form
    values, errors = forms.parse_form(fields, form)
    job, job_errors = forms.parse_form(JOB_FIELDS, form)
    errors |= job_errors
    values["checkpoints"] = [
        int(c) if c.isascii() and c.isdigit() else c for c in values.get("checkpoints", [])
    ]
    values["prompts"] = values.get("prompts") or [""]
    spec = None
    try:
        spec = FrontierSpec.model_validate(values)
    except ValidationError as exc:
        errors = forms.validation_errors(exc, NAMES) | errors  # parse errors win
    try:
        SubmitFrontier.model_validate({"spec": {"checkpoints": [1]}, **job})
    except ValidationError as exc:
        errors = forms.validation_errors(exc, [f.name for f in JOB_FIELDS]) | errors
    return spec, job, errors


def _render(
    name: str | None,
    fields: list[forms.FormField],
    checkpoints: list[dict[str, Any]],
    shown: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> tuple[str, int]:
    """The page, showing frontier `name` (`NotFound` if there is none such), or the newest."""
    with read_scope() as s:
        frontiers = list_frontiers(s)
        if name is None and frontiers:
            name = frontiers[0]["name"]
        data = frontier_points(s, name) if name is not None else None
    labels = {f.name: f.label for f in [*fields, *JOB_FIELDS]}
    labels |= {key: title for key, title, _ in LAYOUT}
    page = render_template(
        "frontier.html",
        name=name,
        data=data,
        frontiers=frontiers,
        groups=forms.group_fields(fields, LAYOUT),
        job_fields=JOB_FIELDS,
        no_checkpoints=not checkpoints,
        values=shown,
        errors=errors,
        labels=labels,
    )
    return page, status


@bp.route("/frontier", methods=["GET", "POST"])
def frontier():
    with read_scope() as s:
        checkpoints = list_checkpoints(s)
    fields = _fields(checkpoints)
    if request.method == "GET":
        name = request.args.get("name") or None
        if name is not None and not FRONTIER_NAME.fullmatch(name):
            raise NotFound(f"no frontier named {name!r}")
        return _render(name, fields, checkpoints, _defaults(fields), {})
    shown = forms.posted_values(fields, request.form) | forms.posted_values(
        JOB_FIELDS, request.form
    )
    spec, job, errors = _parse(fields)
    if spec is not None and not errors:
        try:
            name, created = submit_frontier(spec, queue=job["queue"], priority=job["priority"])
        except SpecError as exc:
            errors = {exc.field.split(".")[0]: exc.message}
        else:
            flash(f"Frontier {name} queued: {len(created)} generation jobs.", "success")
            return redirect(url_for("pages.frontier", name=name))
    if "" in errors:  # the spec's own check (samples per job): shown on the grid
        errors["grid"] = errors.pop("")
    return _render(None, fields, checkpoints, shown, errors, 422)
