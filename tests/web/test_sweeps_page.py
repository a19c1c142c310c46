"""The sweeps pages without a browser: the form refuses a bad file naming the field and
stores nothing; a created sweep's page and its actions; importance once trials complete."""

from __future__ import annotations

import html
import re

import yaml
from sqlalchemy import func, select

from shared import jobs, sweeps
from shared.contracts.sweep import SweepSpec
from shared.db import session_scope
from shared.models import Job, Run, Sweep, SweepTrial
from tests.web.conftest import csrf_token
from web.queries.sweeps import sweep_detail
from worker import results

FILE = """\
name: page-sweep
base: {preset: tiny, dataset: corpus.txt, max_steps: 20, eval_every: 10}
method: random
parameters:
  lr: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}
  warmup_steps: {values: [0, 5, 10]}
run_cap: 6
concurrency: 6
"""


def _count(model) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_a_bad_file_is_refused_naming_the_field(client, web_env):
    token = csrf_token(client.get("/sweeps").text)
    r = client.post(
        "/sweeps", data={"file": "name: x\nparameters: {lr: {values: [9]}}", "csrf_token": token}
    )
    assert r.status_code == 422
    assert "parameters.lr" in r.text and "less than or equal to 1" in r.text
    r = client.post("/sweeps", data={"file": "{{not yaml", "csrf_token": token})
    assert r.status_code == 422 and "not YAML" in r.text
    assert _count(Sweep) == 0 and _count(Run) == 0


def test_create_show_and_act(client, web_env):
    token = csrf_token(client.get("/sweeps").text)
    r = client.post("/sweeps", data={"file": FILE, "csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].endswith("/sweeps/1")
    page = client.get("/sweeps/1").text
    assert "Sweep page-sweep" in page and "random over 2 parameters" in page
    r = client.post("/sweeps/1/pause", data={"csrf_token": token}, follow_redirects=True)
    assert "Sweep 1: pause done." in r.text and 'class="badge paused"' in r.text
    r = client.post("/sweeps/1/pause", data={"csrf_token": token}, follow_redirects=True)
    assert r.status_code == 200  # pausing a paused sweep is a no-op
    r = client.post(
        "/sweeps/1/extend", data={"trials": "x", "csrf_token": token}, follow_redirects=True
    )
    assert "trials: a whole number" in r.text
    assert "Sweeps" in client.get("/sweeps").text and "page-sweep" in client.get("/sweeps").text


def test_importance_ranks_the_parameter_that_decides_the_metric(web_env):
    """Six complete trials whose metric follows lr and ignores warmup_steps: PED-ANOVA puts
    lr first."""
    spec = SweepSpec.model_validate(yaml.safe_load(FILE))
    sweep_id, _ = sweeps.create(spec)
    with session_scope() as s:
        trials = s.scalars(select(SweepTrial).where(SweepTrial.sweep_id == sweep_id)).all()
        lrs = {t.runs[0].id: t.params["lr"] for t in trials}
        ids = {
            t.runs[0].id: s.scalar(select(Job.id).where(Job.run_id == t.runs[0].id)) for t in trials
        }
    for run_id, lr in lrs.items():
        claim = jobs.claim(ids[run_id], "w")
        results.merge_run_summary(claim, run_id, {"nll_bound": 3.0 + 100 * lr})
        jobs.succeed(claim)
    with session_scope() as s:
        detail = sweep_detail(s, sweep_id)
    scores = detail["importance"]["scores"]
    assert scores is not None, detail["importance"]
    assert max(scores, key=scores.get) == "lr", scores
    assert detail["best"] == min(3.0 + 100 * lr for lr in lrs.values())
    assert [b["best"] for b in detail["best_so_far"]] == sorted(
        [b["best"] for b in detail["best_so_far"]], reverse=True
    )


def test_a_sweep_around_a_run_starts_from_its_settings(client, web_env):
    from tests.web.seed import add_run

    run_id = add_run("base-run", steps=20, eval_every=10, spec_overrides={"lr": 0.003})
    run_page = client.get(f"/runs/{run_id}").text
    assert f'href="/sweeps?from_run={run_id}"' in run_page
    page = client.get(f"/sweeps?from_run={run_id}")
    assert page.status_code == 200
    text = html.unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", page.text, re.S)[1])
    filed = yaml.safe_load(text)
    assert filed["base"]["lr"] == 0.003 and filed["parameters"]["lr"]["min"] < 0.003
    token = csrf_token(page.text)
    r = client.post("/sweeps", data={"file": text, "csrf_token": token})
    assert r.status_code == 302, r.text
    with session_scope() as s:
        sweep = s.scalars(select(Sweep)).one()
        assert SweepSpec.model_validate(sweep.spec).base_spec().lr == 0.003
    assert client.get("/sweeps?from_run=999").status_code == 404
    assert client.get("/sweeps?from_run=x").status_code == 400
