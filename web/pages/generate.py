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
from typing import Any, get_args

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from shared import submit
from shared.contracts.limits import MAX_GRID, MAX_ID, MAX_SAMPLES
from shared.contracts.options import DIFFUSION_ONLY, PackagedJudge
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
# The inputs an AR checkpoint does not read: hidden while one is picked, not parsed.
DIFFUSION_ONLY_FIELDS = [f"grid.{name}" for name in DIFFUSION_ONLY]
OBJECTIVE_LABELS = {"ar": "AR", "diffusion": "diffusion"}
NAMES = [f.name for f in FIELDS] + [key for key, _, _ in LAYOUT]


def _checkpoint_field(checkpoints: list[dict[str, Any]]) -> forms.FormField:
    """The checkpoint input as a select of the stored checkpoints, each labelled with its
    objective."""
    base = next(f for f in FIELDS if f.name == "checkpoint")
    choices = tuple(
        (
            str(c["id"]),
            f"{c['run_name']} · step {c['step']} · {OBJECTIVE_LABELS[c['objective']]} "
            f"(checkpoint {c['id']}, run {c['run_id']})",
        )
        for c in checkpoints
    )
    return dataclasses.replace(
        base, kind="choice", choices=choices, description="The checkpoint to sample from."
    )


def _judge_field(checkpoints: list[dict[str, Any]]) -> forms.FormField:
    """The judge as a select: none, the packaged judges, the AR runs' checkpoints (the judge
    field's other values, a directory or a hub name, are for the API and the CLI)."""
    base = next(f for f in FIELDS if f.name == "judge")
    packaged = tuple((name, f"{name} (packaged)") for name in get_args(PackagedJudge))
    ar = tuple(
        (
            str(c["id"]),
            f"AR checkpoint {c['id']}: {c['run_name']} · step {c['step']} (run {c['run_id']})",
        )
        for c in checkpoints
        if c["objective"] == "ar"
    )
    return dataclasses.replace(
        base,
        kind="choice",
        choices=packaged + ar,
        optional=True,
        description="A causal LM that scores every sample set (judge perplexity, beside the "
        "samples' token entropy): a packaged judge, or an AR run's checkpoint.",
    )


def default_checkpoint(checkpoints: list[dict[str, Any]]) -> str:
    """The newest diffusion checkpoint (what this page is mostly for), else the newest."""
    diffusion = [c for c in checkpoints if c["objective"] != "ar"]
    picked = (diffusion or checkpoints)[:1]
    return str(picked[0]["id"]) if picked else ""


def _is_ar(checkpoints: list[dict[str, Any]], picked: Any) -> bool:
    return any(str(c["id"]) == str(picked) and c["objective"] == "ar" for c in checkpoints)


def _distinct(text: str) -> int:
    """Distinct entries of a comma list, as the server parses them ('1, 1.0' is one)."""
    seen = set()
    for part in forms.split_list(text):
        try:
            seen.add(float(part))
        except ValueError:
            seen.add(part)
    return len(seen)


def counts(shown: dict[str, Any], ar: bool = False) -> dict[str, int]:
    """Sample sets (the product of the grid's dimensions), prompts, samples per prompt, from
    the inputs as shown: the count the page's script (static/forms.js) keeps up to date. On
    an AR checkpoint (`ar`) the unmasking dimensions do not count."""
    dims = [d for d in DIMS if not (ar and d in DIFFUSION_ONLY_FIELDS)]
    sets = math.prod(
        len(shown[d]) if isinstance(shown[d], list) else _distinct(shown[d]) for d in dims
    )
    prompts = max(1, sum(1 for line in shown["prompts"].split("\n") if line.strip()))
    samples = shown["num_samples"].strip()
    return {"sets": sets, "prompts": prompts, "samples": int(samples) if samples.isdigit() else 0}


def _render(
    fields: list[forms.FormField],
    values: dict[str, Any],
    errors: dict[str, str],
    checkpoints: list[dict[str, Any]],
    status: int = 200,
):
    ar = _is_ar(checkpoints, values["checkpoint"])
    attrs: dict[str, dict[str, str]] = {d: {"data-dim": ""} for d in DIMS}  # forms.js multiplies
    for name in DIFFUSION_ONLY_FIELDS:
        attrs.setdefault(name, {})["data-diffusion-only"] = ""
        if ar:
            attrs[name]["hidden"] = ""
    return (
        render_template(
            "generate.html",
            groups=forms.group_fields(fields, LAYOUT),
            job_fields=JOB_FIELDS,
            field_attrs=attrs,
            values=values,
            errors=errors,
            count=counts(values, ar),
            max_grid=MAX_GRID,
            max_samples=MAX_SAMPLES,
            no_checkpoints=not checkpoints,
            ar=ar,
            ar_checkpoints=[c["id"] for c in checkpoints if c["objective"] == "ar"],
        ),
        status,
    )


@bp.route("/generate", methods=["GET", "POST"])
def generate():
    with read_scope() as s:
        checkpoints = list_checkpoints(s)
    special = {"checkpoint": _checkpoint_field(checkpoints), "judge": _judge_field(checkpoints)}
    fields = [special.get(f.name, f) for f in FIELDS]
    if request.method == "POST":
        return _submit(fields, checkpoints)
    picked = request.args.get("checkpoint") or default_checkpoint(checkpoints)
    # The spec's defaults, with the picked checkpoint and an empty prompt box.
    data = {
        **GenerateSpec(checkpoint=1).model_dump(mode="json"),
        "checkpoint": picked,
        "prompts": [],
    }
    values = forms.display_values(fields, data) | forms.display_values(
        JOB_FIELDS, {"queue": None, "priority": 0}
    )
    return _render(fields, values, {}, checkpoints)


def _checkpoint_id(text: Any) -> int:
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        raise ValueError("pick a checkpoint")
    if not 1 <= int(text) <= MAX_ID:
        raise ValueError(f"no checkpoint with id {text}")
    return int(text)


def _submit(fields: list[forms.FormField], checkpoints: list[dict[str, Any]]):
    form = request.form
    shown = forms.posted_values(fields, form) | forms.posted_values(JOB_FIELDS, form)
    parsed = fields
    if _is_ar(checkpoints, form.get("checkpoint")):
        # Not read by an AR checkpoint: left out, so neither checked nor stored.
        parsed = [f for f in fields if f.name not in DIFFUSION_ONLY_FIELDS]
    values, errors = forms.parse_form(parsed, form)
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
    return _render(fields, shown, errors, checkpoints, 422)
