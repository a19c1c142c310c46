"""Bad input is a 4xx that names its own field, and nothing is stored: over-long source
names, JSON nested too deep, seeds out of range, booleans or NaN where numbers go, and the
frontier's lists and prompts (issue 20's list, each as it was tried)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Job, Run
from tests.web.seed import add_run


def _counts() -> tuple[int, int]:
    with session_scope() as s:
        return s.scalar(select(func.count(Run.id))), s.scalar(select(func.count(Job.id)))


def _refused(api, path: str, body: dict | str | bytes, field: str, status: int = 422) -> str:
    """POST `body`; it must be answered `status` naming `field`, storing nothing. Returns
    the reason given for `field`."""
    before = _counts()
    if isinstance(body, dict):
        r = api.post(path, json=body)
    else:
        r = api.post(path, data=body, content_type="application/json")
    assert r.status_code == status, (path, field, r.status_code, r.text[:500])
    fields = {f["field"]: f["reason"] for f in r.json["error"]["fields"]}
    assert field in fields, (field, r.json["error"])
    assert _counts() == before
    return fields[field]


LONG = "x" * 5000
SLASHES = "a/" * 3000


@pytest.mark.parametrize("name", [LONG, SLASHES, "a" * 300, "/" + "b" * 300 + "/c.txt"])
@pytest.mark.parametrize("field", ["dataset", "model"])
def test_over_long_source_names_are_refused_naming_the_field(api, web_env, field, name):
    reason = _refused(api, "/api/runs", {"preset": "tiny", "spec": {field: name}}, f"spec.{field}")
    assert len(reason) < 400  # the reason does not repeat 5,000 characters back


@pytest.mark.parametrize("name", [LONG, SLASHES, "c" * 300])
def test_over_long_judge_and_evaluation_dataset_names_are_refused(api, web_env, name):
    ckpt = _checkpoint()
    generate = {"spec": {"checkpoint": ckpt, "judge": name}}
    _refused(api, "/api/generate", generate, "spec.judge")
    frontier = {"spec": {"checkpoints": [ckpt], "judge": name}}
    _refused(api, "/api/frontiers", frontier, "spec.judge")
    _refused(api, "/api/evaluate", {"spec": {"checkpoint": ckpt, "dataset": name}}, "spec.dataset")


def _checkpoint() -> int:
    from shared.db import session_scope as scope
    from shared.models import Checkpoint

    run_id = add_run("with-checkpoint", steps=10, eval_every=10, log_every=5)
    with scope() as s:
        return s.scalars(select(Checkpoint.id).where(Checkpoint.run_id == run_id)).first() or 1


def test_json_nested_too_deep_is_refused_before_it_is_parsed(api, web_env):
    _refused(api, "/api/runs", b"[" * 100_000, "body", status=400)
    masking = '{"grid": ' * 5000 + "{}" + "}" * 5000
    body = '{"preset": "tiny", "spec": {"masking": ' + masking + "}}"
    _refused(api, "/api/runs", body, "body", status=400)
    # Brackets inside strings are text, not nesting.
    ok = api.post("/api/runs", json={"preset": "tiny", "name": "[" * 100})
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("seed", [2**64, 2**63 - 1, 2**31, -1])
def test_seeds_out_of_range_are_refused(api, web_env, seed):
    _refused(api, "/api/runs", {"preset": "tiny", "spec": {"seed": seed}}, "spec.seed")
    body = {"spec": {"checkpoint": 1, "grid": {"seeds": [0, seed]}}}
    _refused(api, "/api/generate", body, "spec.grid.seeds")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"max_steps": True}, "spec.max_steps"),
        ({"seed": False}, "spec.seed"),
        ({"lr": True}, "spec.lr"),
        ({"max_texts": True}, "spec.max_texts"),
        ({"masking": {"prefix_length": True}}, "spec.masking.prefix_length"),
        ({"masking": {"grid": [0.5, True]}}, "spec.masking.grid"),
        ({"eval_ratios": [True]}, "spec.eval_ratios"),
        ({"scratch": {"layers": True}}, "spec.scratch.layers"),
    ],
)
def test_a_boolean_is_not_a_number(api, web_env, spec, field):
    reason = _refused(api, "/api/runs", {"preset": "tiny", "spec": spec}, field)
    assert "boolean" in reason


def test_booleans_are_refused_in_generation_grids_and_request_fields(api, web_env):
    _refused(api, "/api/generate", {"spec": {"checkpoint": True}}, "spec.checkpoint")
    body = {"spec": {"checkpoint": 1, "grid": {"seeds": [True]}}}
    _refused(api, "/api/generate", body, "spec.grid.seeds")
    _refused(
        api, "/api/generate", {"spec": {"checkpoint": 1, "num_samples": True}}, "spec.num_samples"
    )
    _refused(api, "/api/runs", {"preset": "tiny", "priority": True}, "priority")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"preset": "tiny", "spec": {"max_grad_norm": NaN}}', "spec.max_grad_norm"),
        ('{"preset": "tiny", "spec": {"minutes": Infinity}}', "spec.minutes"),
        ('{"preset": "tiny", "spec": {"lr": -Infinity}}', "spec.lr"),
        ('{"preset": "tiny", "spec": {"masking": {"grid": [NaN]}}}', "spec.masking.grid.0"),
    ],
)
def test_nan_and_infinity_are_refused(api, web_env, raw, field):
    _refused(api, "/api/runs", raw, field)


def test_frontier_lists_and_prompts_are_refused_naming_their_own_field(api, web_env):
    temperatures = [round(0.05 * i, 2) for i in range(1, 100)]
    body = {"spec": {"checkpoints": [1], "temperatures": temperatures}}
    assert "at most 64" in _refused(api, "/api/frontiers", body, "spec.temperatures")
    # Each list within bounds, the grid too large as a whole: its longest list is named.
    body = {"spec": {"checkpoints": [1], "temperatures": temperatures[:40]}}
    assert "combinations" in _refused(api, "/api/frontiers", body, "spec.temperatures")
    body = {"spec": {"checkpoints": [1], "steps": list(range(1, 30))}}
    _refused(api, "/api/frontiers", body, "spec.steps")
    body = {"spec": {"checkpoint": 1, "grid": {"temperatures": temperatures}}}
    _refused(api, "/api/generate", body, "spec.grid.temperatures")
    body = {"spec": {"checkpoints": [1], "prompts": ["x" * 5000]}}
    assert "5000 characters" in _refused(api, "/api/frontiers", body, "spec.prompts")
    body = {"spec": {"checkpoint": 1, "prompts": ["y" * 5000]}}
    _refused(api, "/api/generate", body, "spec.prompts")
