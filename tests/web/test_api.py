"""The JSON API with a bearer token: every endpoint against a real SQLite database.

Writes go through `shared.jobs` into the embedded broker, so a submitted job is a real
row with a real message; nothing here is mocked.
"""

from __future__ import annotations

import re

import jsonschema_rs
import pytest
from sqlalchemy import func, select, update

from shared import errors, submit, workers
from shared.contracts.specs import TrainSpec
from shared.db import session_scope
from shared.models import Checkpoint, Job, JobKind, JobStatus, Run
from tests.web.conftest import logged_in
from tests.web.seed import add_run, add_sample_set
from web.api import schemas
from web.openapi import document
from web.queries.jobs import MAX_JOBS_LISTED
from web.queries.runs import MAX_PER_PAGE, RUN_SORTS

STATUSES = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RUNNING, JobStatus.CANCELLED]


def _counts() -> tuple[int, int]:
    with session_scope() as s:
        return s.scalar(select(func.count(Run.id))), s.scalar(select(func.count(Job.id)))


def _conforms(body, name: str) -> None:
    """`body` is valid against components/schemas/NAME of our OpenAPI document."""
    doc = document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(body)]
    assert not errors, errors[:3]


def _error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.is_json
    assert r.json["error"]["status"] == status
    return r.json["error"]


@pytest.fixture
def many_runs(web_env):
    """120 short runs: 4 statuses, 2 presets, a tag on every third, names run-000.."""
    ids = []
    for i in range(120):
        ids.append(
            add_run(
                f"run-{i:03d}",
                status=STATUSES[i % 4],
                steps=100,
                eval_every=100,
                log_every=50,
                ratios=(0.5, 1.0),
                preset="tiny" if i % 2 else "minilm",
                tags=["sweep"] if i % 3 == 0 else [],
                offset=i / 100,
            )
        )
    return ids


def test_runs_are_listed_filtered_sorted_and_paged(api, many_runs):
    r = api.get("/api/runs")
    assert r.status_code == 200
    page = r.json
    _conforms(page, "RunPage")
    assert (page["total"], page["pages"], page["per_page"]) == (120, 3, 50)
    assert [x["id"] for x in page["items"]] == sorted(many_runs, reverse=True)[:50]

    seen = []
    for n in (1, 2, 3):
        items = api.get(f"/api/runs?page={n}&per_page=50&sort=id&order=asc").json["items"]
        seen += [x["id"] for x in items]
    assert seen == sorted(many_runs)
    assert api.get("/api/runs?page=4").json["items"] == []

    names = [x["name"] for x in api.get("/api/runs?sort=name&order=asc&per_page=200").json["items"]]
    assert names == sorted(names) and len(names) == 120

    failed = api.get("/api/runs?status=failed&per_page=200").json
    assert failed["total"] == 30 and {x["status"] for x in failed["items"]} == {"failed"}
    tagged = api.get("/api/runs?tag=sweep&per_page=200").json
    assert tagged["total"] == 40 and all(x["tags"] == ["sweep"] for x in tagged["items"])
    both = api.get("/api/runs?tag=sweep&preset=tiny&status=succeeded").json
    assert all(x["preset"] == "tiny" and x["status"] == "succeeded" for x in both["items"])
    assert api.get("/api/runs?q=run-07").json["total"] == 10
    assert api.get("/api/runs?q=%25").json["total"] == 0  # % is literal, not a wildcard

    # Only succeeded runs have a bound; sorted ascending it rises, the rest come last.
    items = api.get("/api/runs?sort=bound&order=asc&per_page=200").json["items"]
    bounds = [x["ppl_bound"] for x in items]
    known = [b for b in bounds if b is not None]
    assert len(known) == 30 and known == sorted(known) and bounds[:30] == known

    running = next(x for x in page["items"] if x["status"] == "running")
    assert running["job_id"] is not None and running["queue"] == "cpu"
    assert running["settings"]["masking.mode"] == "grid"


@pytest.mark.parametrize(
    "query, field",
    [
        ("sort=loss", "sort"),
        ("order=up", "order"),
        ("status=done", "status"),
        ("page=0", "page"),
        ("per_page=201", "per_page"),
        ("per_page=ten", "per_page"),
        ("q=" + "x" * 201, "q"),
        ("page=1&page=2", "page"),  # one value each: a repeat is not silently dropped
    ],
)
def test_bad_run_queries_are_400_naming_the_parameter(api, query, field):
    error = _error(api.get(f"/api/runs?{query}"), 400)
    assert error["fields"][0]["field"] == field


def test_run_detail_and_curves(api, web_env):
    run_id = add_run("detail", steps=400, eval_every=100, log_every=10, tags=["a<b>"])
    r = api.get(f"/api/runs/{run_id}")
    assert r.status_code == 200
    run = r.json
    assert run["name"] == "detail" and run["tags"] == ["a<b>"]
    assert [c["step"] for c in run["checkpoints"]] == [100, 200, 300, 400]
    assert run["spec"]["preset"] == "tiny" and run["spec"]["max_steps"] == 400
    _conforms(run["jobs"][0], "Job")
    assert run["ppl_bound"] == pytest.approx(run["summary"]["ppl_bound"])

    curves = api.get(f"/api/runs/{run_id}/curves").json
    assert curves["eval"]["steps"] == [100, 200, 300, 400]
    assert len(curves["ratios"]) == 11 and len(curves["eval"]["loss"]["0.5"]) == 4
    assert all(b is not None for b in curves["eval"]["bound"])
    assert curves["eval"]["loss"]["1"][0] > curves["eval"]["loss"]["0.1"][0]
    assert len(curves["train"]["step"]) == 40

    few = api.get(f"/api/runs/{run_id}/curves?max_points=3").json
    assert few["eval"]["steps"] == [100, 300, 400]  # first and last kept
    assert len(few["train"]["step"]) <= 3
    _error(api.get(f"/api/runs/{run_id}/curves?max_points=1"), 400)

    assert "no run" in _error(api.get("/api/runs/999"), 404)["message"]
    _error(api.get("/api/runs/99999999999999999999"), 404)  # past any id: not an overflow
    _error(api.get("/api/runs/999/curves"), 404)


def test_submit_train_stores_the_run_and_queues_its_job(api, web_env):
    r = api.post(
        "/api/runs",
        json={
            "preset": "tiny",
            "spec": {"lr": 0.002, "max_steps": 7, "masking": {"mode": "uniform"}},
            "name": "from the api",
            "tags": ["api"],
            "priority": 3,
        },
    )
    assert r.status_code == 201, r.text
    _conforms(r.json, "Submitted")
    body = r.json
    assert body["queue"] == "cpu"
    with session_scope() as s:
        job = s.get(Job, body["job_id"])
        run = s.get(Run, body["run_id"])
        assert (job.status, job.priority, job.run_id) == (JobStatus.QUEUED, 3, run.id)
        assert job.enqueued_at is not None  # committed, then sent
        assert (run.name, run.tags, run.max_steps) == ("from the api", ["api"], 7)
        assert run.spec["lr"] == 0.002 and run.spec["masking"]["mode"] == "uniform"
        assert run.spec["model"] == "scratch"  # the rest from the preset
    listed = api.get("/api/runs").json["items"][0]
    assert listed["id"] == body["run_id"] and listed["status"] == "queued"


def test_null_in_a_submitted_spec_sets_the_field_to_none(api, web_env):
    # minilm's head_lr is 2e-3; null means "the same as lr", not "the preset's value".
    body = api.post("/api/runs", json={"preset": "minilm", "spec": {"head_lr": None}}).json
    with session_scope() as s:
        assert s.get(Run, body["run_id"]).spec["head_lr"] is None


@pytest.mark.parametrize(
    "body, field",
    [
        ({"preset": "tiny", "spec": {"lr": -1}}, "spec.lr"),
        ({"preset": "tiny", "spec": {"num_processes": 2, "batch_size": 1}}, "spec"),
        ({"preset": "tiny", "spec": {"masking": {"grid": [0.5, 1.5]}}}, "spec.masking.grid"),
        ({"preset": "tiny", "spec": {"scratch": {"hidden": 130, "heads": 4}}}, "spec.scratch"),
        ({"preset": "tiny", "spec": {"learning_rate": 1}}, "spec.learning_rate"),
        ({"preset": "tiny", "spec": {"dataset": "../../etc/passwd"}}, "spec.dataset"),
        ({"preset": "tiny", "spec": {"dataset": "~nobody-here/x.txt"}}, "spec.dataset"),
        ({"preset": "tiny", "spec": {"max_steps": 10**12}}, "spec.max_steps"),
        ({"preset": "huge"}, "preset"),
        ({"preset": "tiny", "queue": "tpu"}, "queue"),
        ({"preset": "tiny", "priority": 5000}, "priority"),
        ({"preset": "tiny", "colour": "red"}, "colour"),
        ({"preset": "tiny", "tags": "a,b"}, "tags"),
    ],
)
def test_invalid_training_submissions_are_422_and_store_nothing(api, web_env, body, field):
    before = _counts()
    error = _error(api.post("/api/runs", json=body), 422)
    assert field in [f["field"] for f in error["fields"]], error
    assert all(f["reason"] for f in error["fields"])
    assert _counts() == before


def test_bodies_that_are_not_json_objects(api, web_env):
    _error(api.post("/api/runs", data="preset=tiny"), 415)
    _error(api.post("/api/runs", data="{not json", content_type="application/json"), 400)
    error = _error(api.post("/api/runs", json=[1, 2]), 422)
    assert error["fields"] == [{"field": "body", "reason": "not an object"}]
    assert _counts() == (0, 0)


def test_jobs_list_get_priority_cancel_retry(api, web_env):
    done = add_run("done")
    ids = [
        api.post("/api/runs", json={"preset": "tiny", "name": f"q{i}"}).json["job_id"]
        for i in range(3)
    ]
    listed = api.get("/api/jobs").json
    assert [j["id"] for j in listed][:3] == ids[::-1]
    for j in listed:
        _conforms(j, "Job")
    assert {j["id"] for j in api.get("/api/jobs?status=queued").json} == set(ids)
    assert [j["run_id"] for j in api.get("/api/jobs?status=succeeded&kind=train").json] == [done]
    assert len(api.get("/api/jobs?limit=2").json) == 2
    _error(api.get("/api/jobs?status=nope"), 400)
    _error(api.get("/api/jobs?limit=0"), 400)

    job = api.get(f"/api/jobs/{ids[0]}").json
    assert (job["status"], job["kind"], job["priority"]) == ("queued", "train", 0)
    _error(api.get("/api/jobs/9999"), 404)

    # Priority reorders the queue the workers page shows.
    r = api.patch(f"/api/jobs/{ids[2]}", json={"priority": 50})
    assert r.status_code == 200 and r.json["priority"] == 50
    queue = next(q for q in api.get("/api/workers").json["queues"] if q["name"] == "cpu")
    assert [j["id"] for j in queue["jobs"]] == [ids[2], ids[0], ids[1]]
    assert [j["position"] for j in queue["jobs"]] == [1, 2, 3]
    error = _error(api.patch(f"/api/jobs/{ids[2]}", json={"priority": 1001}), 422)
    assert error["fields"][0]["field"] == "priority"
    _error(api.patch(f"/api/jobs/{ids[2]}", json={}), 422)
    done_job = listed[-1]["id"]
    assert (
        "only queued"
        in _error(api.patch(f"/api/jobs/{done_job}", json={"priority": 1}), 409)["message"]
    )
    _error(api.patch("/api/jobs/9999", json={"priority": 1}), 404)

    # Cancel a queued job: cancelled at once, its run too; again: unchanged, still 200.
    r = api.post(f"/api/jobs/{ids[0]}/cancel")
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    assert api.get(f"/api/runs/{r.json['run_id']}").json["status"] == "cancelled"
    assert api.post(f"/api/jobs/{ids[0]}/cancel").json["status"] == "cancelled"
    _error(api.post("/api/jobs/9999/cancel"), 404)

    # Retry: only failed or cancelled jobs.
    r = api.post(f"/api/jobs/{ids[0]}/retry")
    assert r.status_code == 200 and r.json["status"] == "queued" and r.json["attempts"] == 0
    assert (
        "only failed or cancelled" in _error(api.post(f"/api/jobs/{ids[1]}/retry"), 409)["message"]
    )
    _error(api.post(f"/api/jobs/{done_job}/retry"), 409)
    _error(api.post("/api/jobs/9999/retry"), 404)


def test_run_cancel_and_retry_act_on_its_training_job(api, web_env):
    body = api.post("/api/runs", json={"preset": "tiny"}).json
    r = api.post(f"/api/runs/{body['run_id']}/cancel")
    assert r.status_code == 200
    assert (r.json["id"], r.json["status"]) == (body["job_id"], "cancelled")
    r = api.post(f"/api/runs/{body['run_id']}/retry")
    assert r.status_code == 200 and r.json["status"] == "queued"
    _error(api.post(f"/api/runs/{body['run_id']}/retry"), 409)
    _error(api.post("/api/runs/999/cancel"), 404)


@pytest.fixture
def checkpoint(web_env, tmp_path):
    """A run whose last checkpoint's folder exists (jobs refuse missing checkpoints)."""
    run_id = add_run("with-weights")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()[-1]
        s.execute(update(Checkpoint).where(Checkpoint.id == ckpt.id).values(url=folder.as_uri()))
        return ckpt.id


def test_a_checkpoint_is_named_by_id_url_or_directory(api, checkpoint, tmp_path):
    """The three names a user sees for one checkpoint all submit a job pinned to its id."""
    folder = tmp_path / "ckpt"
    for ref in (checkpoint, str(checkpoint), folder.as_uri(), str(folder), f"{folder}/"):
        r = api.post("/api/generate", json={"spec": {"checkpoint": ref, "num_samples": 1}})
        assert r.status_code == 201, (ref, r.text)
        assert api.get(f"/api/jobs/{r.json['job_id']}").json["spec"]["checkpoint"] == checkpoint
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = api.post("/api/generate", json={"spec": {"checkpoint": str(other)}})
    assert r.status_code == 422 and "spec.checkpoint" in r.text


def test_submit_generate_and_evaluate(api, checkpoint):
    spec = {
        "checkpoint": checkpoint,
        "prompts": ["In the beginning"],
        "grid": {"temperatures": [0.5, 1.0], "strategies": ["entropy", "margin"]},
        "length": 8,
        "num_samples": 2,
    }
    r = api.post("/api/generate", json={"spec": spec, "priority": 2})
    assert r.status_code == 201, r.text
    assert r.json["sample_sets"] == 4
    job = api.get(f"/api/jobs/{r.json['job_id']}").json
    assert (job["kind"], job["status"], job["priority"]) == ("generate", "queued", 2)

    r = api.post("/api/evaluate", json={"spec": {"checkpoint": str(checkpoint), "batches": 1}})
    assert r.status_code == 201, r.text
    assert api.get(f"/api/jobs/{r.json['job_id']}").json["kind"] == "evaluate"

    before = _counts()
    for body, field in [
        ({"spec": {**spec, "checkpoint": 999}}, "spec.checkpoint"),
        ({"spec": {**spec, "checkpoint": 10**30}}, "spec.checkpoint"),
        ({"spec": {**spec, "checkpoint": "²"}}, "spec.checkpoint"),
        ({"spec": {**spec, "grid": {"temperatures": [0]}}}, "spec.grid.temperatures"),
        ({"spec": {**spec, "num_samples": 0}}, "spec.num_samples"),
        ({"spec": {**spec, "prompts": []}}, "spec.prompts"),
    ]:
        error = _error(api.post("/api/generate", json=body), 422)
        assert field in [f["field"] for f in error["fields"]], (body, error)
    for body, field in [
        ({"spec": {"checkpoint": 999}}, "spec.checkpoint"),
        ({"spec": {"checkpoint": checkpoint, "ratios": [2.0]}}, "spec.ratios"),
        ({"spec": {"checkpoint": checkpoint, "dataset": "~nobody-here/x"}}, "spec.dataset"),
        ({"spec": {"checkpoint": checkpoint, "dataset": "/etc/passwd"}}, "spec.dataset"),
        ({}, "spec"),
    ]:
        error = _error(api.post("/api/evaluate", json=body), 422)
        assert field in [f["field"] for f in error["fields"]], (body, error)
    assert _counts() == before


def test_checkpoints_and_sample_sets(api, web_env):
    a = add_run("a")
    b = add_run("b")
    set_a = add_sample_set(a, ["In the beginning was <script>alert(1)</script>"])
    set_b = add_sample_set(b, ["In the beginning god", "In the beginning again"])

    ckpts = api.get(f"/api/checkpoints?run_id={a}").json
    assert [c["step"] for c in ckpts] == [400, 300, 200, 100]
    assert {c["run_name"] for c in ckpts} == {"a"}
    assert len(api.get("/api/checkpoints").json) == 8
    _error(api.get("/api/checkpoints?run_id=x"), 400)
    _error(api.get("/api/checkpoints?run_id=²"), 400)
    _error(api.get("/api/checkpoints?run_id=99999999999999999999"), 400)

    sets = api.get("/api/sample-sets").json
    assert [x["id"] for x in sets] == [set_b, set_a]
    assert [x["samples"] for x in sets] == [2, 1]
    assert [x["id"] for x in api.get(f"/api/sample-sets?run_id={a}").json] == [set_a]
    ckpt_b = sets[0]["checkpoint_id"]
    assert [x["id"] for x in api.get(f"/api/sample-sets?checkpoint_id={ckpt_b}").json] == [set_b]
    _error(api.get("/api/sample-sets?run_id=-1"), 400)

    detail = api.get(f"/api/sample-sets/{set_a}").json
    assert detail["run_id"] == a and detail["step"] == 400
    sample = detail["samples"][0]
    assert sample["text"].endswith("<script>alert(1)</script>")  # JSON carries it as data
    assert len(sample["trajectory"]["steps"]) == 3
    _error(api.get("/api/sample-sets/999"), 404)


def test_compare(api, web_env):
    a = add_run("a", spec_overrides={"lr": 0.001})
    b = add_run("b", spec_overrides={"lr": 0.002}, offset=0.3)
    add_sample_set(a, ["In the beginning god made the earth"])
    add_sample_set(b, ["In the beginning god made heaven"])

    r = api.get(f"/api/compare?runs={a},{b}&max_points=2")
    assert r.status_code == 200
    data = r.json
    assert [x["id"] for x in data["runs"]] == [a, b]
    assert set(data["curves"]) == {str(a), str(b)}
    assert data["curves"][str(a)]["eval"]["steps"] == [100, 400]
    lr = next(x for x in data["settings"] if x["field"] == "lr")
    assert lr == {"field": "lr", "values": [0.001, 0.002], "same": False}
    assert next(x for x in data["settings"] if x["field"] == "model")["same"] is True
    (pair,) = data["samples"]
    diff = pair["texts"][str(b)]["diff"]
    assert {"op": "delete", "text": "the earth"} in diff
    assert {"op": "insert", "text": "heaven"} in diff
    assert data["sample_metrics"][str(a)]["distinct_2"] == 0.6

    assert _error(api.get(f"/api/compare?runs={a}"), 400)["fields"][0]["field"] == "runs"
    _error(api.get(f"/api/compare?runs={a},{a}"), 400)
    _error(api.get("/api/compare?runs=" + ",".join(str(i) for i in range(1, 10))), 400)
    _error(api.get(f"/api/compare?runs={a},x"), 400)
    _error(api.get(f"/api/compare?runs={a},99999999999"), 400)
    _error(api.get(f"/api/compare?runs={a},999"), 404)


def test_workers_presets_schema_openapi(api, web_env):
    workers.register("w1@box", ["cpu", "gpu"], "cuda:0")
    submit.submit_train(TrainSpec.from_preset("tiny", max_steps=5), name="queued")
    data = api.get("/api/workers").json
    assert [w["name"] for w in data["workers"]] == ["w1@box"]
    assert data["workers"][0]["state"] == "online" and data["workers"][0]["heartbeat_age_s"] < 60
    cpu = next(q for q in data["queues"] if q["name"] == "cpu")
    assert (cpu["queued"], cpu["workers_online"], cpu["jobs"][0]["position"]) == (1, 1, 1)

    presets = api.get("/api/presets").json
    assert {"tiny", "minilm"} <= set(presets)
    assert presets["tiny"]["model"] == "scratch" and presets["tiny"]["preset"] == "tiny"

    for kind, field in [("train", "lr"), ("generate", "grid"), ("evaluate", "ratios")]:
        schema = api.get(f"/api/schema/{kind}").json
        assert field in schema["properties"]
    _error(api.get("/api/schema/nope"), 404)

    doc = api.get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    schemas = set(doc["components"]["schemas"])
    assert {"SubmitTrain", "TrainSpec", "Error", "Job", "RunPage"} <= schemas


def test_openapi_describes_every_api_route(app):
    """Every route of the API blueprint is in the document and nothing else is."""
    documented = set()
    for path, ops in document()["paths"].items():
        documented |= {(path, method.upper()) for method in ops}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi":
            path = _openapi_path(rule)
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented


def _openapi_path(rule) -> str:
    """/api/runs/<int(max=...):run_id> -> /api/runs/{run_id}."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)


def test_bodies_over_the_limit_are_413_json(api, web_env):
    r = api.post("/api/runs", data=b"x" * (2 << 20), content_type="application/json")
    error = _error(r, 413)
    assert error["message"]
    assert _counts() == (0, 0)


def test_unknown_api_paths_are_404_json(api):
    _error(api.get("/api/nothing-here"), 404)
    _error(api.delete("/api/runs"), 405)


def test_openapi_enums_and_bounds_are_the_codes_own():
    """Statuses, kinds, sort names and page limits come from the code that checks them."""
    doc = document()
    job = doc["components"]["schemas"]["Job"]["properties"]
    assert job["status"]["enum"] == [s.value for s in JobStatus]
    assert job["kind"]["enum"] == [k.value for k in JobKind]
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/runs"]["get"]["parameters"]}
    assert params["sort"]["enum"] == ["", *RUN_SORTS]
    assert params["per_page"]["anyOf"][0]["maximum"] == MAX_PER_PAGE
    assert params["status"]["enum"] == ["", *(s.value for s in JobStatus)]
    jobs_params = doc["paths"]["/api/jobs"]["get"]["parameters"]
    limit = next(p["schema"] for p in jobs_params if p["name"] == "limit")
    assert limit["anyOf"][0]["maximum"] == MAX_JOBS_LISTED
    kind = doc["paths"]["/api/schema/{kind}"]["get"]["parameters"][0]["schema"]
    assert kind["enum"] == list(schemas()) == ["train", "generate", "evaluate", "frontier", "sweep"]


def test_not_found_and_conflict_come_from_the_error_type_not_its_text(app):
    """A state conflict whose message starts like a missing job's is still a 409."""

    def raise_(which: str):
        if which == "missing":
            raise errors.JobNotFound("job 7 is gone")
        raise errors.JobError("no job may be retried while it runs")

    app.add_url_rule("/api/_raise/<which>", view_func=raise_)
    client = logged_in(app)
    _error(client.get("/api/_raise/missing"), 404)
    _error(client.get("/api/_raise/conflict"), 409)
