"""The JSON API: everything the pages do, for scripts and the CLI (`--url`).

Reads go through `web.queries`, writes through `shared.jobs`, exactly as the pages do.
Every error is JSON: {"error": {"status", "message", "fields": [{"field", "reason"}]}}.
The routes and their bodies are described by the OpenAPI document at /api/openapi.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, jsonify, render_template, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from shared import jobs
from shared.contracts.specs import PRESETS, EvalSpec, GenerateSpec, SpecError, TrainSpec
from shared.db import read_scope
from web import queries
from web.api_models import PatchJob, SubmitEvaluate, SubmitGenerate, SubmitTrain
from web.auth import ApiAuthError

bp = Blueprint("api", __name__, url_prefix="/api")

# Ids are 32-bit in PostgreSQL (and SQLite refuses integers past 64 bits): a larger id is
# simply not found, rather than an overflow deep in the database driver.
MAX_ID = 2**31 - 1


SCHEMAS: dict[str, type[BaseModel]] = {
    "train": TrainSpec,
    "generate": GenerateSpec,
    "evaluate": EvalSpec,
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or []


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


def error_response(status: int, message: str, fields: list[dict[str, str]] | None = None):
    """JSON under /api/, the error page elsewhere (a page that hit a missing run, say)."""
    if not request.path.startswith("/api/"):
        return render_template("error.html", status=status, message=message), status
    body = {"error": {"status": status, "message": message, "fields": fields or []}}
    return jsonify(body), status


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


def _submitted(job, sample_sets: int | None = None):
    body = {"job_id": job.id, "run_id": job.run_id, "queue": job.queue}
    if sample_sets is not None:
        body["sample_sets"] = sample_sets
    return jsonify(body), 201


def _id_arg(name: str) -> int | None:
    """An optional id in the query string; `QueryError` (400) names a bad one."""
    if request.args.get(name) in (None, ""):
        return None
    return queries.int_arg(request.args, name, 0, 1, MAX_ID)


def _spec_error(exc: SpecError) -> ApiError:
    """A `SpecError` from `shared.jobs` as a 422 naming the field under `spec.`."""
    return ApiError(422, str(exc), [{"field": f"spec.{exc.field}", "reason": exc.message}])


def check_refs(spec: TrainSpec | GenerateSpec | EvalSpec) -> None:
    """Refuse, as 422s, references the job system cannot look up: a checkpoint id past
    the id range (or in non-ASCII digits), a dataset under a home directory that does not
    exist (`~nobody/x`), a step count no integer column holds."""
    ref = getattr(spec, "checkpoint", None)
    if isinstance(ref, str) and ref.isdigit():
        if not ref.isascii():
            raise _spec_error(SpecError("checkpoint", f"expected an id or a URL, got {ref!r}"))
        ref = int(ref)
    if isinstance(ref, int) and ref > MAX_ID:
        raise _spec_error(SpecError("checkpoint", f"no checkpoint with id {ref}"))
    dataset = getattr(spec, "dataset", None)
    if isinstance(dataset, str) and dataset.startswith("~"):
        try:
            Path(dataset).expanduser()
        except RuntimeError:
            reason = f"no such home directory in {dataset!r}"
            raise _spec_error(SpecError("dataset", reason)) from None
    steps = getattr(spec, "max_steps", None)
    if isinstance(steps, int) and steps > MAX_ID:
        raise _spec_error(SpecError("max_steps", f"at most {MAX_ID}"))


def _query(fn, *args, **kwargs):
    with read_scope() as s:
        return fn(s, *args, **kwargs)


# ----------------------------------------------------------------------------- errors


def register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.fields)

    @app.errorhandler(ApiAuthError)
    def _auth_error(exc: ApiAuthError):
        return error_response(exc.status, str(exc))

    @app.errorhandler(queries.QueryError)
    def _query_error(exc: queries.QueryError):
        return error_response(400, str(exc), [{"field": exc.field, "reason": exc.message}])

    @app.errorhandler(SpecError)
    def _spec_error(exc: SpecError):
        return error_response(422, str(exc), [{"field": exc.field, "reason": exc.message}])

    @app.errorhandler(queries.NotFound)
    def _not_found(exc: queries.NotFound):
        return error_response(404, str(exc))

    @app.errorhandler(jobs.JobError)
    def _conflict(exc: jobs.JobError):
        status = 404 if str(exc).startswith("no job") else 409
        return error_response(status, str(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if request.path.startswith("/api/") or exc.code == 413:
            return error_response(exc.code or 500, exc.description or exc.name)
        return exc


# ----------------------------------------------------------------------------- runs


@bp.get("/runs")
def runs():
    return _query(queries.list_runs, queries.RunQuery.from_args(request.args))


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
        job = jobs.submit_train(
            spec, name=body.name, tags=body.tags, queue=body.queue, priority=body.priority
        )
    except SpecError as exc:
        raise _spec_error(exc) from None
    return _submitted(job)


@bp.get("/runs/<int:run_id>")
def run(run_id: int):
    return _query(queries.run_detail, run_id)


@bp.get("/runs/<int:run_id>/curves")
def run_curves(run_id: int):
    n = queries.int_arg(request.args, "max_points", queries.MAX_POINTS, 2, 5000)
    return _query(queries.run_curves, run_id, n)


def _run_job(run_id: int) -> int:
    job_id = _query(queries.run_detail, run_id)["job_id"]
    if job_id is None:
        raise ApiError(409, f"run {run_id} has no training job")
    return job_id


@bp.post("/runs/<int:run_id>/cancel")
def cancel_run(run_id: int):
    job_id = _run_job(run_id)
    jobs.cancel(job_id)
    return _query(queries.get_job_row, job_id)


@bp.post("/runs/<int:run_id>/retry")
def retry_run(run_id: int):
    job_id = _run_job(run_id)
    jobs.retry(job_id)
    return _query(queries.get_job_row, job_id)


# ----------------------------------------------------------------------------- jobs


@bp.get("/jobs")
def job_list():
    limit = queries.int_arg(request.args, "limit", 100, 1, 1000)
    return jsonify(
        _query(
            queries.list_jobs,
            status=request.args.get("status") or None,
            kind=request.args.get("kind") or None,
            limit=limit,
        )
    )


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    return _query(queries.get_job_row, job_id, with_spec=True)


@bp.patch("/jobs/<int:job_id>")
def patch_job(job_id: int):
    body = _body(PatchJob)
    jobs.set_priority(job_id, body.priority)
    return _query(queries.get_job_row, job_id)


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int):
    jobs.cancel(job_id)
    return _query(queries.get_job_row, job_id)


@bp.post("/jobs/<int:job_id>/retry")
def retry_job(job_id: int):
    jobs.retry(job_id)
    return _query(queries.get_job_row, job_id)


@bp.post("/generate")
def submit_generate():
    body = _body(SubmitGenerate)
    check_refs(body.spec)
    try:
        job = jobs.submit_generate(body.spec, queue=body.queue, priority=body.priority)
    except SpecError as exc:
        raise _spec_error(exc) from None
    return _submitted(job, sample_sets=body.spec.grid.size())


@bp.post("/evaluate")
def submit_evaluate():
    body = _body(SubmitEvaluate)
    check_refs(body.spec)
    try:
        job = jobs.submit_evaluate(body.spec, queue=body.queue, priority=body.priority)
    except SpecError as exc:
        raise _spec_error(exc) from None
    return _submitted(job)


# ----------------------------------------------------------------------------- browse


@bp.get("/checkpoints")
def checkpoints():
    return jsonify(_query(queries.list_checkpoints, _id_arg("run_id")))


@bp.get("/sample-sets")
def sample_sets():
    return jsonify(
        _query(
            queries.list_sample_sets,
            run_id=_id_arg("run_id"),
            checkpoint_id=_id_arg("checkpoint_id"),
        )
    )


@bp.get("/sample-sets/<int:set_id>")
def sample_set(set_id: int):
    return _query(queries.sample_set_detail, set_id)


@bp.get("/compare")
def compare():
    ids = queries.parse_run_ids(request.args.get("runs"))
    n = queries.int_arg(request.args, "max_points", queries.MAX_POINTS, 2, 5000)
    return _query(queries.compare, ids, n)


@bp.get("/workers")
def workers():
    return _query(queries.workers_and_queues)


@bp.get("/presets")
def presets():
    return {name: TrainSpec.from_preset(name).model_dump(mode="json") for name in PRESETS}


@bp.get("/schema/<kind>")
def schema(kind: str):
    model = SCHEMAS.get(kind)
    if model is None:
        raise ApiError(404, f"no schema {kind!r}; choose one of {', '.join(SCHEMAS)}")
    return model.model_json_schema()


@bp.get("/openapi.json")
def openapi():
    from web.openapi import document

    return document()
