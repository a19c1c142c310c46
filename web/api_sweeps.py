"""The sweeps API: create, list, show, and the operations on a running sweep.

POST /api/sweeps                    {"spec": {...the sweep file as JSON...}}
GET  /api/sweeps                    newest first
GET  /api/sweeps/<id>               trials, best so far, parameters, importance
GET  /api/sweeps/<id>/export        the spec as a file holds it
POST /api/sweeps/<id>/pause|resume|stop|retry-failed
POST /api/sweeps/<id>/extend        {"trials": 8}
"""

from __future__ import annotations

from flask import jsonify

from shared import sweeps
from shared.contracts.specs import SpecError
from web.api import _body, _query, bp
from web.api_models import ExtendSweep, SubmitSweep
from web.errors import ApiError, spec_error
from web.queries.sweeps import list_sweeps, sweep_detail


def _detail(sweep_id: int):
    detail = _query(sweep_detail, sweep_id)
    if detail is None:
        raise ApiError(404, f"no sweep with id {sweep_id}")
    return detail


@bp.post("/sweeps")
def post_sweep():
    body = _body(SubmitSweep)
    try:
        sweep_id, job_ids = sweeps.create(body.spec)
    except SpecError as exc:
        raise spec_error(exc) from None
    return jsonify({"sweep_id": sweep_id, "job_ids": job_ids}), 201


@bp.get("/sweeps")
def get_sweeps():
    return jsonify(_query(list_sweeps))


@bp.get("/sweeps/<int:sweep_id>")
def get_sweep(sweep_id: int):
    return _detail(sweep_id)


@bp.get("/sweeps/<int:sweep_id>/export")
def export_sweep(sweep_id: int):
    _detail(sweep_id)
    return sweeps.export(sweep_id)


@bp.post("/sweeps/<int:sweep_id>/extend")
def extend_sweep(sweep_id: int):
    _detail(sweep_id)
    trials = _body(ExtendSweep).trials
    return _acting(sweep_id, lambda: sweeps.extend(sweep_id, trials))


def _acting(sweep_id: int, action):
    try:
        action()
    except sweeps.SweepError as exc:
        raise ApiError(409, str(exc)) from None
    return _detail(sweep_id)


def _action_view(name: str, action):
    def view(sweep_id: int):
        _detail(sweep_id)
        return _acting(sweep_id, lambda: action(sweep_id))

    view.__name__ = f"sweep_{name.replace('-', '_')}"
    return view


# One route per action, as the OpenAPI document lists them (`web.openapi.SWEEP_ACTIONS`).
ACTIONS = {
    "pause": sweeps.pause,
    "resume": sweeps.resume,
    "stop": sweeps.stop,
    "retry-failed": sweeps.retry_failed,
}
for _name, _action in ACTIONS.items():
    bp.add_url_rule(
        f"/sweeps/<int:sweep_id>/{_name}", view_func=_action_view(_name, _action), methods=["POST"]
    )
