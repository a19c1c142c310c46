"""Generate: one batch job that samples a checkpoint over a grid of sampler settings.

    GET  /generate                  the form (newest checkpoint picked)
    GET  /generate?checkpoint=12    checkpoint 12 picked
    POST /generate                  validate, queue one job, redirect to the checkpoint's run

The form is built from GenerateSpec's schema (`web.forms`): the grid's enumerated lists
(schedules, samplings, strategies) are checkbox groups of the values the schema allows,
its numeric lists are comma lists. The page's script counts the sample sets the grid will
create; the server checks it with GenerateSpec itself (SamplerGrid's size limit) and
`shared.submit.submit_generate` (the checkpoint's files must exist), and shows any error
beside its field with nothing stored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from shared import submit
from shared.contracts.limits import MAX_GRID, MAX_ID, MAX_SAMPLES
from shared.contracts.specs import GenerateSpec, SpecError
from shared.db import read_scope
from web import forms
from web.api_models import SubmitGenerate
from web.errors import ApiError
from web.pages import bp
from web.queries.run import list_checkpoints
from web.refs import check_refs

SCHEMA = GenerateSpec.model_json_schema()
FIELDS = [
    dataclasses.replace(f, empty_hint="An empty box: one empty prompt (no prefix).")
    if f.name == "prompts"
    else f
    for f in forms.schema_fields(SCHEMA, skip={"frontier"}, kinds={"prompts": "lines"})
]
JOB_FIELDS = forms.schema_fields(SubmitGenerate.model_json_schema(), skip={"spec"})
LAYOUT = [
    ("source", "Checkpoint & prompts", ["checkpoint", "prompts", "length", "num_samples"]),
    ("grid", "Sampler grid", ["grid"]),
    ("judge", "Judge", ["judge"]),
    ("batching", "Batching & device", ["batch_size", "record_trajectory", "device"]),
]
# The grid's dimensions: a sample set per combination of their values.
DIMS = [f.name for f in FIELDS if f.parent == "grid" and f.kind in ("multi", "list")]
NAMES = [f.name for f in FIELDS] + [key for key, _, _ in LAYOUT]


def _checkpoint_field(checkpoints: list[dict[str, Any]]) -> forms.FormField:
    """The checkpoint input as a select of the stored checkpoints."""
    base = next(f for f in FIELDS if f.name == "checkpoint")
    choices = tuple(
        (
            str(c["id"]),
            f"{c['run_name']} · step {c['step']} (checkpoint {c['id']}, run {c['run_id']})",
        )
        for c in checkpoints
    )
    return dataclasses.replace(
        base, kind="choice", choices=choices, description="The checkpoint to sample from."
    )


def _distinct(text: str) -> int:
    """Distinct entries of a comma list, as the server parses them ('1, 1.0' is one)."""
    seen = set()
    for part in forms.split_list(text):
        try:
            seen.add(float(part))
        except ValueError:
            seen.add(part)
    return len(seen)


def counts(shown: dict[str, Any]) -> dict[str, int]:
    """Sample sets (the product of the grid's dimensions), prompts, samples per prompt, from
    the inputs as shown: the count the page's script (static/forms.js) keeps up to date."""
    sets = math.prod(
        len(shown[d]) if isinstance(shown[d], list) else _distinct(shown[d]) for d in DIMS
    )
    prompts = max(1, sum(1 for line in shown["prompts"].split("\n") if line.strip()))
    samples = shown["num_samples"].strip()
    return {"sets": sets, "prompts": prompts, "samples": int(samples) if samples.isdigit() else 0}


def _render(
    fields: list[forms.FormField],
    values: dict[str, Any],
    errors: dict[str, str],
    count: dict[str, int],
    no_checkpoints: bool,
    status: int = 200,
):
    return (
        render_template(
            "generate.html",
            groups=forms.group_fields(fields, LAYOUT),
            job_fields=JOB_FIELDS,
            field_attrs={d: {"data-dim": ""} for d in DIMS},  # forms.js multiplies these
            values=values,
            errors=errors,
            count=count,
            max_grid=MAX_GRID,
            max_samples=MAX_SAMPLES,
            no_checkpoints=no_checkpoints,
        ),
        status,
    )


@bp.route("/generate", methods=["GET", "POST"])
def generate():
    with read_scope() as s:
        checkpoints = list_checkpoints(s)
    fields = [_checkpoint_field(checkpoints) if f.name == "checkpoint" else f for f in FIELDS]
    if request.method == "POST":
        return _submit(fields, not checkpoints)
    picked = request.args.get("checkpoint") or (str(checkpoints[0]["id"]) if checkpoints else "")
    # The spec's defaults, with the picked checkpoint and an empty prompt box.
    data = {
        **GenerateSpec(checkpoint=1).model_dump(mode="json"),
        "checkpoint": picked,
        "prompts": [],
    }
    values = forms.display_values(fields, data) | forms.display_values(
        JOB_FIELDS, {"queue": None, "priority": 0}
    )
    return _render(fields, values, {}, counts(values), not checkpoints)


def _checkpoint_id(text: Any) -> int:
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        raise ValueError("pick a checkpoint")
    if not 1 <= int(text) <= MAX_ID:
        raise ValueError(f"no checkpoint with id {text}")
    return int(text)


def _submit(fields: list[forms.FormField], no_checkpoints: bool):
    form = request.form
    shown = forms.posted_values(fields, form) | forms.posted_values(JOB_FIELDS, form)
    values, errors = forms.parse_form(fields, form)
    job, job_errors = forms.parse_form(JOB_FIELDS, form)
    errors |= job_errors
    if "checkpoint" in values:
        try:
            values["checkpoint"] = _checkpoint_id(values["checkpoint"])
        except ValueError as exc:
            errors["checkpoint"] = str(exc)
            del values["checkpoint"]
    values["prompts"] = values.get("prompts") or [""]  # none: generate without a prompt
    spec = None
    try:
        spec = GenerateSpec.model_validate(values)
    except ValidationError as exc:
        errors = forms.validation_errors(exc, NAMES) | errors  # parse errors win
    try:
        SubmitGenerate.model_validate({"spec": {"checkpoint": 1}, **job})
    except ValidationError as exc:
        errors = forms.validation_errors(exc, [f.name for f in JOB_FIELDS]) | errors
    if spec is not None and not errors:
        try:
            check_refs(spec)
            created = submit.submit_generate(spec, queue=job["queue"], priority=job["priority"])
        except ApiError as exc:
            errors = {f["field"].removeprefix("spec."): f["reason"] for f in exc.fields}
        except SpecError as exc:
            errors = {exc.field: exc.message}
        else:
            n = spec.grid.size()
            flash(f"Job {created.id} queued: {n} sample set{'s' if n != 1 else ''}.", "success")
            return redirect(url_for("pages.run", run_id=created.run_id))
    if "" in errors:  # GenerateSpec's own check, the samples per job: shown on the grid
        whole = errors.pop("")
        errors["grid"] = f"{errors['grid']}; {whole}" if "grid" in errors else whole
    return _render(fields, shown, errors, counts(shown), no_checkpoints, 422)
