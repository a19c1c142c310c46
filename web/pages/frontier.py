"""The speed-quality frontier: quality (judge perplexity with entropy, MAUVE) against cost
(forward passes, seconds per sample), one line per checkpoint and strategy.

    GET  /frontier              the newest frontier, the list of frontiers, the form
    GET  /frontier?name=NAME    that frontier
    POST /frontier              validate (FrontierSpec, `shared.frontier`), queue its jobs

The chart is drawn by static/frontier.js from /api/frontiers/<name>; the table under it
links every point to its sample set.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from shared.contracts.frontier import FrontierSpec
from shared.contracts.limits import FRONTIER_NAME
from shared.contracts.options import Strategy
from shared.contracts.specs import SpecError
from shared.db import read_scope
from shared.frontier import submit_frontier
from web import forms
from web.errors import NotFound
from web.pages import bp
from web.queries.frontier import frontier_points, list_frontiers
from web.queries.run import list_checkpoints

STRATEGIES = list(Strategy.__args__)
FORM_FIELDS = (
    "name",
    "checkpoints",
    "steps",
    "strategies",
    "temperatures",
    "length",
    "num_samples",
    "judge",
)


def _defaults() -> dict[str, Any]:
    spec = FrontierSpec(checkpoints=[1])
    return {
        "name": "",
        "checkpoints": [],
        "steps": ", ".join(map(str, spec.steps)),
        "strategies": spec.strategies,
        "temperatures": ", ".join(f"{t:g}" for t in spec.temperatures),
        "length": str(spec.length),
        "num_samples": str(spec.num_samples),
        "judge": "",
    }


def _posted() -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(the inputs as shown, the values to validate, parse errors by field)."""
    form = request.form
    shown = {k: form.get(k, "") for k in FORM_FIELDS}
    shown["checkpoints"] = form.getlist("checkpoints")
    shown["strategies"] = form.getlist("strategies")
    values: dict[str, Any] = {
        "checkpoints": shown["checkpoints"],
        "strategies": shown["strategies"],
        "name": shown["name"].strip() or None,
        "judge": shown["judge"].strip() or None,
    }
    errors: dict[str, str] = {}
    for key, cast in (("steps", int), ("temperatures", float)):
        try:
            values[key] = [cast(x) for x in forms.split_list(shown[key])]
        except ValueError:
            errors[key] = f"a comma-separated list of {'integers' if cast is int else 'numbers'}"
    for key in ("length", "num_samples"):
        text = shown[key].strip()
        if text.isascii() and text.isdigit():
            values[key] = int(text)
        else:
            errors[key] = "a whole number"
    return shown, values, errors


def _render(
    name: str | None, shown: dict[str, Any], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    """The page, showing frontier `name` (`NotFound` if there is none such), or the newest."""
    with read_scope() as s:
        frontiers = list_frontiers(s)
        checkpoints = list_checkpoints(s)
        if name is None and frontiers:
            name = frontiers[0]["name"]
        data = frontier_points(s, name) if name is not None else None
    page = render_template(
        "frontier.html",
        name=name,
        data=data,
        frontiers=frontiers,
        checkpoints=checkpoints,
        strategies=STRATEGIES,
        values=shown,
        errors=errors,
    )
    return page, status


@bp.route("/frontier", methods=["GET", "POST"])
def frontier():
    if request.method == "GET":
        name = request.args.get("name") or None
        if name is not None and not FRONTIER_NAME.fullmatch(name):
            raise NotFound(f"no frontier named {name!r}")
        return _render(name, _defaults(), {})
    shown, values, errors = _posted()
    spec = None
    try:
        spec = FrontierSpec.model_validate(values)
    except ValidationError as exc:
        errors = forms.validation_errors(exc, FORM_FIELDS) | errors
    if spec is not None and not errors:
        try:
            name, created = submit_frontier(spec)
        except SpecError as exc:
            errors = {exc.field.split(".")[0]: exc.message}
        else:
            flash(f"Frontier {name} queued: {len(created)} generation jobs.", "success")
            return redirect(url_for("pages.frontier", name=name))
    return _render(None, shown, errors, 422)
