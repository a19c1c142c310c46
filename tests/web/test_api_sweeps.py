"""The sweeps API: create (a bad space is a 422 naming the parameter, nothing stored),
list, show, export, and the operations, each answered with the sweep as it now is."""

from __future__ import annotations

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Run, Sweep

SPEC = {
    "name": "api-sweep",
    "base": {
        "preset": "tiny",
        "dataset": "corpus.txt",
        "max_steps": 20,
        "eval_every": 10,
        "scratch": {"layers": 1, "hidden": 32, "heads": 2, "vocab_size": 400},
    },
    "method": "random",
    "parameters": {"lr": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"}},
    "run_cap": 3,
    "concurrency": 2,
}


def _counts() -> tuple[int, int]:
    with session_scope() as s:
        return s.scalar(select(func.count(Sweep.id))), s.scalar(select(func.count(Run.id)))


def test_create_show_list_export(api, web_env):
    r = api.post("/api/sweeps", json={"spec": SPEC})
    assert r.status_code == 201, r.text
    sweep_id = r.json["sweep_id"]
    assert len(r.json["job_ids"]) == 2  # the concurrency
    detail = api.get(f"/api/sweeps/{sweep_id}").json
    assert detail["status"] == "running" and detail["trial_cap"] == 3
    assert [t["state"] for t in detail["trials"]] == ["running", "running"]
    assert all(1e-4 <= t["params"]["lr"] <= 1e-2 for t in detail["trials"])
    assert detail["importance"]["scores"] is None and detail["importance"]["reason"]
    assert [s["id"] for s in api.get("/api/sweeps").json] == [sweep_id]
    exported = api.get(f"/api/sweeps/{sweep_id}/export").json
    assert exported["parameters"] == SPEC["parameters"] and exported["run_cap"] == 3


def test_a_bad_space_is_a_422_naming_the_parameter_and_stores_nothing(api, web_env):
    bad = {**SPEC, "parameters": {"batch_size": {"values": [0, 8]}}}
    r = api.post("/api/sweeps", json={"spec": bad})
    assert r.status_code == 422
    assert r.json["error"]["fields"][0]["field"] == "spec.parameters.batch_size"
    outside = {**SPEC, "base": {**SPEC["base"], "dataset": "/etc/passwd"}}
    r = api.post("/api/sweeps", json={"spec": outside})
    assert r.status_code == 422 and r.json["error"]["fields"][0]["field"] == "spec.dataset"
    assert _counts() == (0, 0)


def test_operations_answer_the_sweep_or_409(api, web_env):
    sweep_id = api.post("/api/sweeps", json={"spec": SPEC}).json["sweep_id"]
    assert api.post(f"/api/sweeps/{sweep_id}/pause").json["status"] == "paused"
    assert api.post(f"/api/sweeps/{sweep_id}/resume").json["status"] == "running"
    extended = api.post(f"/api/sweeps/{sweep_id}/extend", json={"trials": 2}).json
    assert extended["trial_cap"] == 5
    stopped = api.post(f"/api/sweeps/{sweep_id}/stop").json
    assert stopped["status"] == "stopped"
    assert {t["runs"][0]["status"] for t in stopped["trials"]} == {"cancelled"}
    r = api.post(f"/api/sweeps/{sweep_id}/resume")
    assert r.status_code == 409 and "stopped" in r.json["error"]["message"]
    assert api.post("/api/sweeps/999/pause").status_code == 404
