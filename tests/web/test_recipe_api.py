"""The training recipe's fields reach a run through the JSON API, and bad ones are refused
naming the field (real SQLite database, nothing mocked)."""

from __future__ import annotations

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Run

RECIPE = {
    "head_warmup_steps": 5,
    "stratified_t": True,
    "t_distribution": "clipped",
    "t_low": 0.2,
    "t_high": 0.9,
    "complementary_masks": True,
}


def test_recipe_fields_are_stored_with_the_run(api, web_env):
    body = api.post("/api/runs", json={"preset": "tiny", "spec": RECIPE}).json
    with session_scope() as s:
        spec = s.get(Run, body["run_id"]).spec
    assert {k: spec[k] for k in RECIPE} == RECIPE


def test_a_bad_recipe_field_is_a_422_naming_it_and_nothing_is_stored(api, web_env):
    r = api.post("/api/runs", json={"preset": "tiny", "spec": {"t_low": 0.9, "t_high": 0.5}})
    assert r.status_code == 422
    assert "spec.t_high" in [f["field"] for f in r.json["error"]["fields"]], r.json
    with session_scope() as s:
        assert s.scalar(select(func.count(Run.id))) == 0
