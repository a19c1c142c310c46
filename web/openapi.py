"""The OpenAPI 3.1 document of `web.api`, built from the same pydantic models that
validate the requests, so the description cannot drift from the checks."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.specs import EvalSpec, GenerateSpec, TrainSpec
from web import __doc__ as web_doc
from web.api_models import (
    Error,
    PatchJob,
    SubmitEvaluate,
    SubmitGenerate,
    Submitted,
    SubmitTrain,
)

REF = "#/components/schemas/{model}"
OBJECT = {"type": "object"}
ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "A bad query parameter"),
    "401": _json(_ref("Error"), "Not logged in and no valid token"),
    "404": _json(_ref("Error"), "No such object"),
}
BODY_ERRORS = {
    **ERRORS,
    "403": _json(_ref("Error"), "CSRF check failed (cookie sessions)"),
    "409": _json(_ref("Error"), "The object's state does not allow it"),
    "413": _json(_ref("Error"), "Body too large"),
    "415": _json(_ref("Error"), "Not JSON"),
    "422": _json(_ref("Error"), "Invalid body: `fields` names each problem"),
}


def _param(name: str, schema: dict[str, Any], where: str = "query", **extra: Any) -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, **extra}


def _op(summary: str, responses: dict, *, params=(), body: str | None = None, tag: str) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": list(params),
        "responses": {**responses, **(BODY_ERRORS if body else ERRORS)},
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def _paths() -> dict[str, Any]:
    run_id = _param("run_id", ID, "path")
    job_id = _param("job_id", ID, "path")
    max_points = _param("max_points", {"type": "integer", "minimum": 2, "maximum": 5000})
    statuses = ["queued", "running", "succeeded", "failed", "cancelled"]
    page = [
        _param("status", {"type": "string", "enum": statuses}),
        _param("preset", {"type": "string"}),
        _param("tag", {"type": "string"}),
        _param("q", {"type": "string", "maxLength": 200}, description="name contains"),
        _param(
            "sort", {"type": "string", "enum": ["created", "name", "status", "step", "bound", "id"]}
        ),
        _param("order", {"type": "string", "enum": ["asc", "desc"]}),
        _param("page", {"type": "integer", "minimum": 1, "maximum": 10**6}),
        _param("per_page", {"type": "integer", "minimum": 1, "maximum": 200}),
    ]
    created = {"201": _json(_ref("Submitted"), "Queued")}
    ok = {"200": _json(OBJECT)}
    ok_list = {"200": _json({"type": "array", "items": OBJECT})}
    return {
        "/api/runs": {
            "get": _op("Runs, filtered, sorted and paged", ok, params=page, tag="runs"),
            "post": _op("Queue a training run", created, body="SubmitTrain", tag="runs"),
        },
        "/api/runs/{run_id}": {
            "get": _op(
                "A run: settings, checkpoints, jobs, sample sets", ok, params=[run_id], tag="runs"
            )
        },
        "/api/runs/{run_id}/curves": {
            "get": _op(
                "Per-mask-ratio loss curves, the bound per step and the training loss",
                ok,
                params=[run_id, max_points],
                tag="runs",
            )
        },
        "/api/runs/{run_id}/cancel": {
            "post": _op("Cancel the run's training job", ok, params=[run_id], tag="runs")
        },
        "/api/runs/{run_id}/retry": {
            "post": _op(
                "Retry the run's failed or cancelled training job", ok, params=[run_id], tag="runs"
            )
        },
        "/api/jobs": {
            "get": _op(
                "Jobs, newest first",
                ok_list,
                params=[
                    _param("status", {"type": "string", "enum": statuses}),
                    _param("kind", {"type": "string", "enum": ["train", "generate", "evaluate"]}),
                    _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
                tag="jobs",
            )
        },
        "/api/jobs/{job_id}": {
            "get": _op("A job", ok, params=[job_id], tag="jobs"),
            "patch": _op(
                "Change a queued job's priority", ok, params=[job_id], body="PatchJob", tag="jobs"
            ),
        },
        "/api/jobs/{job_id}/cancel": {"post": _op("Cancel a job", ok, params=[job_id], tag="jobs")},
        "/api/jobs/{job_id}/retry": {
            "post": _op("Retry a failed or cancelled job", ok, params=[job_id], tag="jobs")
        },
        "/api/generate": {
            "post": _op(
                "Queue a generation grid over a checkpoint",
                created,
                body="SubmitGenerate",
                tag="jobs",
            )
        },
        "/api/evaluate": {
            "post": _op(
                "Queue an evaluation of a checkpoint", created, body="SubmitEvaluate", tag="jobs"
            )
        },
        "/api/checkpoints": {
            "get": _op(
                "Checkpoints, newest first", ok_list, params=[_param("run_id", ID)], tag="browse"
            )
        },
        "/api/sample-sets": {
            "get": _op(
                "Sample sets, newest first",
                ok_list,
                params=[_param("run_id", ID), _param("checkpoint_id", ID)],
                tag="browse",
            )
        },
        "/api/sample-sets/{set_id}": {
            "get": _op(
                "A sample set with its samples and trajectories",
                ok,
                params=[_param("set_id", ID, "path")],
                tag="browse",
            )
        },
        "/api/compare": {
            "get": _op(
                "Compare 2 to 8 runs: curves, settings diff, metrics, paired samples",
                ok,
                params=[
                    _param(
                        "runs",
                        {"type": "string", "pattern": "^[0-9]+(,[0-9]+){1,7}$"},
                        required=True,
                        description="run ids, comma-separated",
                    ),
                    max_points,
                ],
                tag="browse",
            )
        },
        "/api/workers": {"get": _op("Workers and queues with ETAs", ok, tag="workers")},
        "/api/presets": {"get": _op("Training presets as full specs", ok, tag="specs")},
        "/api/schema/{kind}": {
            "get": _op(
                "JSON schema of a spec (forms are built from it)",
                ok,
                params=[
                    _param(
                        "kind",
                        {"type": "string", "enum": ["train", "generate", "evaluate"]},
                        "path",
                    )
                ],
                tag="specs",
            )
        },
    }


@cache
def document() -> dict[str, Any]:
    models = [SubmitTrain, SubmitGenerate, SubmitEvaluate, PatchJob, Submitted, Error]
    models += [TrainSpec, GenerateSpec, EvalSpec]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "text-diffusion",
            "version": "1",
            "description": (web_doc or "").strip(),
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": _paths(),
    }
