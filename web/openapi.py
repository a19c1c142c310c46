"""The OpenAPI 3.1 document of `web.api`, built from the same pydantic models that
validate the requests, and its enums and bounds from the same constants the code checks
(job statuses and kinds, sort names, page limits), so the description cannot drift."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from shared import kinds
from shared.contracts.limits import FRONTIER_NAME_PATTERN, MAX_FRONTIER_CHARS, MAX_ID
from shared.kinds import Kind
from shared.models import JobKind, JobStatus
from web import __doc__ as web_doc
from web.api import schemas
from web.api_models import (
    Error,
    ExtendSweep,
    FrontierSubmitted,
    PatchJob,
    SubmitFrontier,
    SubmitSweep,
    Submitted,
    SubmitTrain,
    SweepSubmitted,
    submit_model,
)
from web.args import MAX_PAGE, MAX_QUERY_CHARS, ORDERS
from web.queries.compare import MAX_COMPARE
from web.queries.curves import MAX_POINTS, MAX_POINTS_ASKED, MIN_POINTS_ASKED
from web.queries.jobs import JOBS_LISTED, MAX_JOBS_LISTED
from web.queries.runs import MAX_PER_PAGE, PER_PAGE, RUN_SORTS

REF = "#/components/schemas/{model}"
OBJECT = {"type": "object"}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
ID_FILTER = {"anyOf": [ID, {"const": ""}], "description": "empty: any"}
FRONTIER_NAME = {
    "type": "string",
    "pattern": f"^{FRONTIER_NAME_PATTERN}$",
    "maxLength": MAX_FRONTIER_CHARS,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _retry(description: str) -> dict[str, Any]:
    """An error answered with a Retry-After header (whole seconds)."""
    retry_after = {"description": "Seconds to wait", "schema": {"type": "integer"}}
    return {**_json(_ref("Error"), description), "headers": {"Retry-After": retry_after}}


ERRORS = {
    "400": _json(_ref("Error"), "A bad query parameter, or a body nested too deep"),
    "401": _json(_ref("Error"), "Not logged in and no valid token"),
    "404": _json(_ref("Error"), "No such object"),
    "429": _retry("Too many wrong API tokens from this address"),
    "503": _retry("The database is unavailable"),
}
# Every POST/PATCH: a cookie session must send the CSRF token; the state may forbid it.
WRITE_ERRORS = {
    **ERRORS,
    "403": _json(_ref("Error"), "CSRF check failed (cookie sessions)"),
    "409": _json(_ref("Error"), "The object's state does not allow it"),
}
BODY_ERRORS = {
    **WRITE_ERRORS,
    "413": _json(_ref("Error"), "Body too large"),
    "415": _json(_ref("Error"), "Not JSON"),
    "422": _json(_ref("Error"), "Invalid body: `fields` names each problem"),
}


STATUSES = [s.value for s in JobStatus]
KINDS = [k.value for k in JobKind]


def _maybe(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _record(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these keys, all present (values may be null where typed so)."""
    return {"type": "object", "required": list(properties), "properties": properties}


# Response bodies that scripts rely on. Built by hand from `web.queries` (jobs.job_row,
# runs.run_row, runs.list_runs); tests/web/test_api.py checks real responses against them.
JOB = _record(
    {
        "id": {"type": "integer"},
        "kind": {"type": "string", "enum": KINDS},
        "status": {"type": "string", "enum": STATUSES},
        "run_id": _maybe("integer"),
        "queue": {"type": "string"},
        "priority": {"type": "integer"},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "worker": _maybe("string"),
        "cancel_requested": {"type": "boolean"},
        "error": _maybe("string"),
        "result": _maybe("object"),
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _maybe("string"),
        "finished_at": _maybe("string"),
        "heartbeat_at": _maybe("string"),
    }
)
JOB_WITH_SPEC = {
    **JOB,
    "properties": {**JOB["properties"], "spec": {"type": "object", "description": "Its spec."}},
}
RUN_ROW = _record(
    {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "preset": _maybe("string"),
        "tags": {"type": "array", "items": {"type": "string"}},
        "step": {"type": "integer"},
        "max_steps": _maybe("integer"),
        "tokens_seen": {"type": "integer"},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "eta_s": {
            **_maybe("number"),
            "description": "Seconds left while training, from the rate since the training "
            "loop began; null when not training or finished.",
        },
        "ppl_bound": _maybe("number"),
        "nll_bound": _maybe("number"),
        "ppl_pending": {
            "type": "boolean",
            "description": "True until the run's first evaluation: ppl_bound is null.",
        },
        "objective": {
            "type": "string",
            "enum": ["diffusion", "ar"],
            "description": "diffusion: ppl_bound is the ELBO bound; ar: the exact perplexity.",
        },
        "settings": {"type": "object", "description": "Key settings, flattened (masking.mode)."},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _maybe("string"),
        "finished_at": _maybe("string"),
        "job_id": _maybe("integer"),
        "queue": _maybe("string"),
        "error": _maybe("string"),
    }
)
RUN_PAGE = _record(
    {
        "items": {"type": "array", "items": _ref("RunRow")},
        "total": {"type": "integer", "minimum": 0},
        "page": {"type": "integer", "minimum": 1},
        "pages": {"type": "integer", "minimum": 1},
        "per_page": {"type": "integer", "minimum": 1},
    }
)


def _choice(values: list[str], default: str = "any") -> dict[str, Any]:
    """A query parameter picked from `values`; empty means the default, as the pages'
    forms send it (`<option value="">any status</option>`)."""
    return {"type": "string", "enum": ["", *values], "description": f"empty: {default}"}


def _number(low: int, high: int, default: int) -> dict[str, Any]:
    """An integer query parameter; empty means the default, as for `_choice`."""
    return {
        "anyOf": [{"type": "integer", "minimum": low, "maximum": high}, {"const": ""}],
        "description": f"empty: {default}",
    }


def _param(name: str, schema: dict[str, Any], where: str = "query", **extra: Any) -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, **extra}


def _op(
    summary: str,
    responses: dict,
    *,
    params=(),
    body: str | None = None,
    write: bool = False,
    tag: str,
) -> dict:
    errors = BODY_ERRORS if body else WRITE_ERRORS if write else ERRORS
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": list(params),
        "responses": {**responses, **errors},
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
    max_points = _param("max_points", _number(MIN_POINTS_ASKED, MAX_POINTS_ASKED, MAX_POINTS))
    statuses = STATUSES
    page = [
        _param("status", _choice(statuses)),
        _param("preset", {"type": "string"}),
        _param("tag", {"type": "string"}),
        _param("q", {"type": "string", "maxLength": MAX_QUERY_CHARS}, description="name contains"),
        _param("sort", _choice(list(RUN_SORTS), RUN_SORTS[0])),
        _param("order", _choice(list(ORDERS), ORDERS[0])),
        _param("page", _number(1, MAX_PAGE, 1)),
        _param("per_page", _number(1, MAX_PER_PAGE, PER_PAGE)),
    ]
    created = {"201": _json(_ref("Submitted"), "Queued")}
    ok = {"200": _json(OBJECT)}
    ok_list = {"200": _json({"type": "array", "items": OBJECT})}
    job = {"200": _json(_ref("Job"))}
    run_page = {"200": _json(_ref("RunPage"))}
    return {
        "/api/runs": {
            "get": _op("Runs, filtered, sorted and paged", run_page, params=page, tag="runs"),
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
            "post": _op(
                "Cancel the run's training job", job, params=[run_id], write=True, tag="runs"
            )
        },
        "/api/runs/{run_id}/retry": {
            "post": _op(
                "Retry the run's failed or cancelled training job",
                job,
                params=[run_id],
                write=True,
                tag="runs",
            )
        },
        "/api/jobs": {
            "get": _op(
                "Jobs, newest first",
                {"200": _json({"type": "array", "items": _ref("Job")})},
                params=[
                    _param("status", _choice(statuses)),
                    _param("kind", _choice(KINDS)),
                    _param("limit", _number(1, MAX_JOBS_LISTED, JOBS_LISTED)),
                ],
                tag="jobs",
            )
        },
        "/api/jobs/{job_id}": {
            "get": _op(
                "A job, with its spec",
                {"200": _json(_ref("JobWithSpec"))},
                params=[job_id],
                tag="jobs",
            ),
            "patch": _op(
                "Change a queued job's priority", job, params=[job_id], body="PatchJob", tag="jobs"
            ),
        },
        "/api/jobs/{job_id}/cancel": {
            "post": _op("Cancel a job", job, params=[job_id], write=True, tag="jobs")
        },
        "/api/jobs/{job_id}/retry": {
            "post": _op(
                "Retry a failed or cancelled job", job, params=[job_id], write=True, tag="jobs"
            )
        },
        **{
            f"/api/{k.route}": {
                "post": _op(
                    f"Queue a {k.name} job: {k.help}",
                    created,
                    body=submit_model(k).__name__,
                    tag="jobs",
                )
            }
            for k in kinds.routed()
        },
        "/api/frontiers": {
            "get": _op("Speed-quality frontiers, newest first", ok_list, tag="frontier"),
            "post": _op(
                "Queue a frontier: a generation job per checkpoint over a grid of steps, "
                "strategies and temperatures",
                {"201": _json(_ref("FrontierSubmitted"), "Queued")},
                body="SubmitFrontier",
                tag="frontier",
            ),
        },
        "/api/frontiers/{name}": {
            "get": _op(
                "A frontier's points (cost: forward passes and seconds per sample; quality: "
                "judge perplexity with entropy, MAUVE) and their lines",
                ok,
                params=[_param("name", FRONTIER_NAME, "path")],
                tag="frontier",
            )
        },
        **_sweep_paths(ok, ok_list),
        "/api/checkpoints": {
            "get": _op(
                "Checkpoints, newest first",
                ok_list,
                params=[_param("run_id", ID_FILTER)],
                tag="browse",
            )
        },
        "/api/sample-sets": {
            "get": _op(
                "Sample sets, newest first",
                ok_list,
                params=[_param("run_id", ID_FILTER), _param("checkpoint_id", ID_FILTER)],
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
                f"Compare 2 to {MAX_COMPARE} runs: curves, settings diff, metrics, paired samples",
                ok,
                params=[
                    _param(
                        "runs",
                        {"type": "string", "pattern": f"^[0-9]+(,[0-9]+){{1,{MAX_COMPARE - 1}}}$"},
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
                        {"type": "string", "enum": list(schemas())},
                        "path",
                    )
                ],
                tag="specs",
            )
        },
    }


def _sweep_paths(ok: dict, ok_list: dict) -> dict[str, Any]:
    sweep_id = _param("sweep_id", ID, "path")
    conflict = {"409": _json(_ref("Error"), "Not possible in the sweep's state")}
    created = {"201": _json(_ref("SweepSubmitted"), "Created, first trials queued")}
    paths: dict[str, Any] = {
        "/api/sweeps": {
            "get": _op("Sweeps, newest first", ok_list, tag="sweeps"),
            "post": _op(
                "Create a sweep (a search over training specs) and queue its first trials",
                created,
                body="SubmitSweep",
                tag="sweeps",
            ),
        },
        "/api/sweeps/{sweep_id}": {
            "get": _op(
                "A sweep: its trials, best so far, parameters and their importance",
                ok,
                params=[sweep_id],
                tag="sweeps",
            )
        },
        "/api/sweeps/{sweep_id}/export": {
            "get": _op("The sweep's spec, as a file holds it", ok, params=[sweep_id], tag="sweeps")
        },
        "/api/sweeps/{sweep_id}/extend": {
            "post": _op(
                "Raise the trial cap; a finished sweep runs again",
                {**ok, **conflict},
                params=[sweep_id],
                body="ExtendSweep",
                tag="sweeps",
            )
        },
    }
    for action, summary in SWEEP_ACTIONS.items():
        paths[f"/api/sweeps/{{sweep_id}}/{action}"] = {
            "post": _op(summary, {**ok, **conflict}, params=[sweep_id], write=True, tag="sweeps")
        }
    return paths


SWEEP_ACTIONS = {
    "pause": "Pause a sweep: no new trials, running ones go on",
    "resume": "Resume a paused sweep",
    "stop": "Stop a sweep: no new trials, running ones cancelled",
    "retry-failed": "Queue the failed runs of a sweep's trials again",
}


def document() -> dict[str, Any]:
    """The document for the job-kind table as it stands (`shared.kinds`)."""
    return _document(tuple(kinds.KINDS.values()))


@cache
def _document(table: tuple[Kind, ...]) -> dict[str, Any]:
    models = [SubmitTrain, PatchJob, Submitted, Error, SubmitFrontier, FrontierSubmitted]
    models += [submit_model(k) for k in table if k.route is not None]
    models += [k.spec for k in table]
    models += [SubmitSweep, ExtendSweep, SweepSubmitted]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "text-diffusion",
            "version": "1",
            "description": (web_doc or "").strip(),
        },
        "components": {
            "schemas": {
                **schemas.get("$defs", {}),
                "Job": JOB,
                "JobWithSpec": JOB_WITH_SPEC,
                "RunRow": RUN_ROW,
                "RunPage": RUN_PAGE,
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": _paths(),
    }
