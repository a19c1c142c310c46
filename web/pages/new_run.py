"""New training run: a form built from TrainSpec's JSON schema, a preset picker, clone and edit.

    GET  /runs/new                  the default preset's values
    GET  /runs/new?preset=tiny      that preset's values (the picker reloads with this)
    GET  /runs/new?clone=7          run 7's stored spec, named "<name> (copy)"
    GET  /runs/new?dataset=x.txt    a dataset picked on the datasets page
    POST /runs/new                  validate, queue, redirect to the new run

Every field of the spec is on the form (`web.forms` builds it from the schema), so a field
added to TrainSpec shows up here without a template change. Errors, from parsing, from
pydantic or from `shared.jobs` (a dataset outside DATASET_ROOT), are shown beside their
field with the input kept, and nothing is stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from shared import submit
from shared.contracts.limits import MAX_ID
from shared.contracts.presets import PRESETS
from shared.contracts.specs import SpecError, TrainSpec
from shared.db import read_scope
from web import args, forms
from web.api_models import SubmitTrain
from web.errors import ApiError
from web.pages import bp
from web.queries.jobs import get_job_row
from web.queries.run import flat_settings, train_job_id
from web.queries.runs import get_run
from web.refs import check_refs

DEFAULT_PRESET = "minilm"
SCHEMA = TrainSpec.model_json_schema()
SPEC_FIELDS = forms.schema_fields(SCHEMA, skip={"preset"})
JOB_FIELDS = [
    dataclasses.replace(f, empty_hint="Empty: the preset and the time, e.g. tiny-20250101-120000.")
    if f.name == "name"
    else f
    for f in forms.schema_fields(SubmitTrain.model_json_schema(), skip={"preset", "spec"})
]
LAYOUT = [
    # The most consequential choice first: it decides what the rest of the form trains.
    ("objective", "Objective", ["objective"]),
    (
        "model-data",
        "Model & data",
        [
            "model",
            "dataset",
            "dataset_config",
            "text_column",
            "max_texts",
            "val_fraction",
            "seq_len",
        ],
    ),
    (
        "optimisation",
        "Optimisation",
        [
            "batch_size",
            "grad_accum",
            "lr",
            "head_lr",
            "weight_decay",
            "warmup_steps",
            "lr_decay",
            "max_grad_norm",
            "init_output_bias",
            "mixed_precision",
            "seed",
        ],
    ),
    (
        "schedule",
        "Schedule, evaluation & checkpoints",
        [
            "max_steps",
            "minutes",
            "eval_every",
            "eval_ratios",
            "eval_batches",
            "save_every",
            "log_every",
            "tensorboard",
        ],
    ),
    ("masking", "Masking", ["masking"]),
    (
        "recipe",
        "Training recipe",
        [
            "head_warmup_steps",
            "stratified_t",
            "t_distribution",
            "t_low",
            "t_high",
            "complementary_masks",
        ],
    ),
    ("scratch", "Scratch architecture", ["scratch"]),
    ("hardware", "Device", ["device", "num_processes"]),
]
GROUPS = forms.group_fields(SPEC_FIELDS, LAYOUT)
GROUP_HELP = {
    "masking": SCHEMA["$defs"]["MaskingSpec"].get("description", ""),
    "recipe": "How mask ratios are drawn and what trains when; each option is measured in "
    "BENCHMARKS.md (Training recipe). The bound is always evaluated over every mask ratio.",
    "scratch": SCHEMA["properties"]["scratch"].get("description", "")
    + " Leave every field empty for none.",
}
NAMES = [f.name for f in SPEC_FIELDS] + [g.key for g in GROUPS]


def preset_summary(name: str) -> str:
    """What a preset sets, in a line: 'model = scratch, lr = 0.001, ...'."""
    flat = flat_settings(PRESETS.get(name, {}))
    if not flat:
        return "The spec's defaults."
    shown = (f"{k} = {'none' if v is None else v}" for k, v in flat.items())
    return "Sets " + ", ".join(shown) + "."


def _render(
    preset: str,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    clone: dict[str, Any] | None = None,
):
    return (
        render_template(
            "new_run.html",
            presets=list(PRESETS),
            preset=preset,
            preset_help=f"{SCHEMA['properties']['preset'].get('description', '')} "
            + preset_summary(preset),
            groups=GROUPS,
            group_help=GROUP_HELP,
            job_fields=JOB_FIELDS,
            values=values,
            errors=errors,
            clone=clone,
        ),
        status,
    )


def _clone(run_id: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(preset, spec values, job values) of a stored run, over its preset's defaults (a
    field added to TrainSpec since the run was stored keeps its default)."""
    with read_scope() as s:
        run = get_run(s, run_id)
        spec, name, tags = dict(run.spec or {}), run.name, list(run.tags or [])
        job_id = train_job_id(s, run_id)
        job = get_job_row(s, job_id) if job_id is not None else None
    preset = spec.get("preset") if spec.get("preset") in PRESETS else DEFAULT_PRESET
    base = TrainSpec.from_preset(preset).model_dump(mode="json")
    merged = {**base, **spec, "masking": {**base["masking"], **(spec.get("masking") or {})}}
    job_values = {
        "name": f"{name} (copy)",
        "tags": tags,
        "queue": job["queue"] if job else None,
        "priority": job["priority"] if job else 0,
    }
    return preset, merged, job_values


@bp.route("/runs/new", methods=["GET", "POST"])
def new_run():
    if request.method == "POST":
        return _submit()
    errors: dict[str, str] = {}
    clone = None
    if request.args.get("clone"):
        run_id = args.int_arg(request.args, "clone", 0, 1, MAX_ID)
        preset, spec, job = _clone(run_id)
        clone = {"id": run_id, "name": job["name"].removesuffix(" (copy)")}
    else:
        preset = request.args.get("preset") or DEFAULT_PRESET
        if preset not in PRESETS:
            errors["preset"] = f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
            preset = DEFAULT_PRESET
        spec = TrainSpec.from_preset(preset).model_dump(mode="json")
        if request.args.get("dataset"):
            spec["dataset"] = request.args["dataset"]
        job = {"name": None, "tags": [], "queue": None, "priority": 0}
    values = forms.display_values(SPEC_FIELDS, spec) | forms.display_values(JOB_FIELDS, job)
    return _render(preset, values, errors, 400 if errors else 200, clone)


def build_spec(preset: str, values: dict[str, Any]) -> TrainSpec:
    """The preset with the form's values; an emptied optional field is None ("empty means
    none", as the form says). The form posts every field, so a value left as the preset
    shows it is not a choice the user made: it is left out, and the spec's rules for fields
    not given apply (switched to `scratch`, a model starts without the unigram output bias,
    as `--model scratch` does on the command line)."""
    shown = TrainSpec.from_preset(preset).model_dump(mode="json")
    changed = {k: v for k, v in values.items() if k not in shown or shown[k] != v}
    return TrainSpec.from_preset_data(preset, changed)


# The checks `shared.submit.submit_train` makes of single values before it stores anything,
# by field. Made here on each value alone, so the form reports them together with every
# other invalid field rather than one submit later.
SUBMIT_CHECKS: dict[str, Callable[[Any], object]] = {
    "model": submit.model_source,
    "dataset": submit.dataset_source,
}


def source_errors(values: dict[str, Any], skip: dict[str, str]) -> dict[str, str]:
    """{field: reason} for each value in `values` that `SUBMIT_CHECKS` refuses; fields
    in `skip` (already refused) are not checked again."""
    errors = {}
    for field, check in SUBMIT_CHECKS.items():
        value = values.get(field)
        if field in skip or not isinstance(value, str):
            continue
        try:
            check(value)
        except SpecError as exc:
            errors[exc.field] = exc.message
    return errors


def _submit():
    form = request.form
    preset = form.get("preset", "")
    shown = forms.posted_values(SPEC_FIELDS, form) | forms.posted_values(JOB_FIELDS, form)
    values, errors = forms.parse_form(SPEC_FIELDS, form)
    job, job_errors = forms.parse_form(JOB_FIELDS, form)
    errors |= job_errors
    spec = None
    if preset not in PRESETS:
        errors["preset"] = f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
    else:
        try:
            spec = build_spec(preset, values)
        except ValidationError as exc:
            errors = forms.validation_errors(exc, NAMES) | errors  # parse errors win
    try:
        SubmitTrain.model_validate({"preset": DEFAULT_PRESET, **job})
    except ValidationError as exc:
        errors = forms.validation_errors(exc, [f.name for f in JOB_FIELDS]) | errors
    errors = source_errors(values, skip=errors) | errors
    if spec is not None and not errors:
        try:
            check_refs(spec)
            created = submit.submit_train(
                spec,
                name=job["name"],
                tags=job["tags"],
                queue=job["queue"],
                priority=job["priority"],
            )
        except ApiError as exc:
            errors = {f["field"].removeprefix("spec."): f["reason"] for f in exc.fields}
        except SpecError as exc:
            errors = {exc.field: exc.message}
        else:
            flash(
                f"Run {created.run_id} queued (job {created.id}, {created.queue} queue).", "success"
            )
            return redirect(url_for("pages.run", run_id=created.run_id))
    shown_preset = preset if preset in PRESETS else DEFAULT_PRESET
    return _render(shown_preset, shown, errors, 422)
