"""The JSON API: everything the pages do, for scripts and the CLI (`--url`).

Reads go through `web.queries` (arguments through `web.args`), writes through
`shared.jobs`, exactly as the pages do. Every error is JSON (see `web.errors`):
{"error": {"status", "message", "fields": [{"field", "reason"}]}}. The routes and their
bodies are described by the OpenAPI document at /api/openapi.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ValidationError

from shared import jobs, kinds, submit
from shared.contracts.frontier import FrontierSpec
from shared.contracts.limits import FRONTIER_NAME, MAX_FRONTIER_CHARS, MAX_ID
from shared.contracts.presets import PRESETS
from shared.contracts.specs import GenerateSpec, SpecError, TrainSpec
from shared.contracts.sweep import SweepSpec
from shared.db import read_scope
from shared.frontier import submit_frontier
from shared.kinds import Kind
from web import args
from web.api_models import PatchJob, SubmitFrontier, SubmitTrain, submit_model
from web.errors import ApiError, spec_error
from web.guard import limit_json_depth
from web.queries.compare import compare as compare_runs
from web.queries.curves import MAX_POINTS, MAX_POINTS_ASKED, MIN_POINTS_ASKED
from web.queries.curves import run_curves as curves_of
from web.queries.frontier import frontier_points, list_frontiers
from web.queries.jobs import JOBS_LISTED, MAX_JOBS_LISTED, get_job_row, list_jobs
from web.queries.run import list_checkpoints, run_detail, train_job_id
from web.queries.runs import list_runs
from web.queries.samples import list_sample_sets, sample_set_detail
from web.queries.workers import workers_and_queues
from web.refs import check_refs

bp = Blueprint("api", __name__, url_prefix="/api")
# After the login guard, before any view parses the body.
bp.before_request(limit_json_depth)

# Specs that are not a job kind's (those are read from `shared.kinds` when asked for).
SCHEMAS: dict[str, type[BaseModel]] = {"frontier": FrontierSpec, "sweep": SweepSpec}


def schemas() -> dict[str, type[BaseModel]]:
    """GET /api/schema/<name>: every job kind's spec, and the others."""
    return {**{k.name: k.spec for k in kinds.KINDS.values()}, **SCHEMAS}


@bp.before_request  # after the app's login guard: a stranger gets 401, not 404
def _ids_in_range() -> None:
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and value > MAX_ID:
            raise ApiError(404, f"no {name.removesuffix('_id')} with id {value}")


@bp.before_request
def _one_value_per_parameter() -> None:
    """Every query parameter of the API holds one value (lists are comma-separated), so a
    repeated one is an error rather than silently reading the first."""
    repeated = [name for name, values in request.args.lists() if len(values) > 1]
    if repeated:
        fields = [{"field": n, "reason": "given more than once"} for n in repeated]
        raise ApiError(400, f"query parameter {repeated[0]!r} given more than once", fields)


def validation_fields(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """pydantic errors as [{"field": "spec.lr", "reason": "..."}]."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        out.append(
            {
                "field": prefix + loc if loc else prefix.rstrip(".") or "body",
                "reason": err["msg"].removeprefix("Value error, "),
            }
        )
    return out


def _body(model: type[BaseModel]) -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(415 if not request.is_json else 400, "expected a JSON object body")
    if not isinstance(data, dict):
        raise ApiError(
            422, "expected a JSON object body", [{"field": "body", "reason": "not an object"}]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid request body", validation_fields(exc)) from None


def _submitted(job, **extra: Any):
    body = {"job_id": job.id, "run_id": job.run_id, "queue": job.queue, **extra}
    return jsonify(body), 201


def _query(fn, *args, **kwargs):
    with read_scope() as s:
        return fn(s, *args, **kwargs)


# ----------------------------------------------------------------------------- runs


@bp.get("/runs")
def runs():
    return _query(list_runs, args.run_query(request.args))


def spec_from_submission(body: SubmitTrain) -> TrainSpec:
    """TrainSpec from a preset plus overrides; errors name the field as `spec.FIELD`."""
    if body.preset not in PRESETS:
        raise ApiError(
            422,
            "unknown preset",
            [{"field": "preset", "reason": f"choose one of {', '.join(PRESETS)}"}],
        )
    overrides = {k: v for k, v in body.spec.items() if k != "preset"}
    try:
        return TrainSpec.from_preset_data(body.preset, overrides)
    except ValidationError as exc:
        raise ApiError(422, "invalid training spec", validation_fields(exc, "spec.")) from None


@bp.post("/runs")
def submit_run():
    body = _body(SubmitTrain)
    spec = spec_from_submission(body)
    check_refs(spec)
    try:
        job = submit.submit_train(
            spec, name=body.name, tags=body.tags, queue=body.queue, priority=body.priority
        )
    except SpecError as exc:
        raise spec_error(exc) from None
    return _submitted(job)


@bp.get("/runs/<int:run_id>")
def run(run_id: int):
    return _query(run_detail, run_id)


@bp.get("/runs/<int:run_id>/curves")
def run_curves(run_id: int):
    n = args.int_arg(request.args, "max_points", MAX_POINTS, MIN_POINTS_ASKED, MAX_POINTS_ASKED)
    return _query(curves_of, run_id, n)


def _run_job(run_id: int) -> int:
    job_id = _query(train_job_id, run_id)
    if job_id is None:
        raise ApiError(409, f"run {run_id} has no training job")
    return job_id


@bp.post("/runs/<int:run_id>/cancel")
def cancel_run(run_id: int):
    job_id = _run_job(run_id)
    jobs.cancel(job_id)
    return _query(get_job_row, job_id)


@bp.post("/runs/<int:run_id>/retry")
def retry_run(run_id: int):
    job_id = _run_job(run_id)
    jobs.retry(job_id)
    return _query(get_job_row, job_id)


# ----------------------------------------------------------------------------- jobs


@bp.get("/jobs")
def job_list():
    limit = args.int_arg(request.args, "limit", JOBS_LISTED, 1, MAX_JOBS_LISTED)
    return jsonify(
        _query(
            list_jobs,
            status=request.args.get("status") or None,
            kind=request.args.get("kind") or None,
            limit=limit,
        )
    )


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    return _query(get_job_row, job_id, with_spec=True)


@bp.patch("/jobs/<int:job_id>")
def patch_job(job_id: int):
    body = _body(PatchJob)
    jobs.set_priority(job_id, body.priority)
    return _query(get_job_row, job_id)


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int):
    jobs.cancel(job_id)
    return _query(get_job_row, job_id)


@bp.post("/jobs/<int:job_id>/retry")
def retry_job(job_id: int):
    jobs.retry(job_id)
    return _query(get_job_row, job_id)


def _submit_view(kind: Kind) -> Callable[[], Any]:
    """The view of `POST /api/<route>` for a routed job kind: validate, check, submit."""
    model = submit_model(kind)

    def view():
        body = _body(model)
        check_refs(body.spec)
        try:
            job = kind.submit_function()(body.spec, queue=body.queue, priority=body.priority)
        except SpecError as exc:
            raise spec_error(exc) from None
        return _submitted(job, **(kind.answer(body.spec) if kind.answer else {}))

    return view


@bp.record
def _kind_routes(state) -> None:
    """A route per routed job kind of the table, as it stands when the app is made."""
    for kind in kinds.routed():
        state.add_url_rule(
            f"/{kind.route}", f"submit_{kind.name}", _submit_view(kind), methods=["POST"]
        )


@bp.post("/frontiers")
def post_frontier():
    body = _body(SubmitFrontier)
    check_refs(body.spec)
    try:
        name, created = submit_frontier(body.spec, queue=body.queue, priority=body.priority)
    except SpecError as exc:
        raise spec_error(exc) from None
    sets = sum(GenerateSpec.model_validate(j.spec).grid.size() for j in created)
    return jsonify({"frontier": name, "job_ids": [j.id for j in created], "sample_sets": sets}), 201


@bp.get("/frontiers")
def frontiers():
    return jsonify(_query(list_frontiers))


@bp.get("/frontiers/<name>")
def frontier(name: str):
    if len(name) > MAX_FRONTIER_CHARS or not FRONTIER_NAME.fullmatch(name):
        raise ApiError(404, f"no frontier named {name!r}")
    return _query(frontier_points, name)


# ----------------------------------------------------------------------------- browse


@bp.get("/checkpoints")
def checkpoints():
    return jsonify(_query(list_checkpoints, args.id_arg(request.args, "run_id")))


@bp.get("/sample-sets")
def sample_sets():
    return jsonify(
        _query(
            list_sample_sets,
            run_id=args.id_arg(request.args, "run_id"),
            checkpoint_id=args.id_arg(request.args, "checkpoint_id"),
        )
    )


@bp.get("/sample-sets/<int:set_id>")
def sample_set(set_id: int):
    return _query(sample_set_detail, set_id)


@bp.get("/compare")
def compare():
    ids = args.run_ids(request.args.get("runs"))
    n = args.int_arg(request.args, "max_points", MAX_POINTS, MIN_POINTS_ASKED, MAX_POINTS_ASKED)
    return _query(compare_runs, ids, n)


@bp.get("/workers")
def workers():
    return _query(workers_and_queues)


@bp.get("/presets")
def presets():
    return {name: TrainSpec.from_preset(name).model_dump(mode="json") for name in PRESETS}


@bp.get("/schema/<kind>")
def schema(kind: str):
    model = schemas().get(kind)
    if model is None:
        raise ApiError(404, f"no schema {kind!r}; choose one of {', '.join(schemas())}")
    return model.model_json_schema()


@bp.get("/openapi.json")
def openapi():
    from web.openapi import document

    return document()
