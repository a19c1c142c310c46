"""A sweep in a real browser, end to end: written in the form on /sweeps, its trials run as
ordinary runs on `up`'s worker, the pruner stops the ones behind at their first
evaluation, and its page draws best-so-far, the parallel coordinates and the trials table
live. Screenshots go to test-artifacts/ (for a person to look at)."""

from __future__ import annotations

import re
import time

from tests.web.test_browser import (
    ARTIFACTS,
    PASSWORD,
    TIMEOUT_MS,
    goto,
    page,  # noqa: F401 (fixture)
    server,  # noqa: F401 (fixture)
)

# Four learning rates, one a trial at a time: 3e-3 trains, the other three barely move in
# 12 steps. Sweep 1's grid order (Optuna's GridSampler, seeded with the sweep id) starts
# with 3e-3, so at the first evaluation (step 4) each later trial is behind the first:
# successive halving (keep 1/2) cuts at least two of them.
SWEEP = """\
name: browser-sweep
base:
  preset: tiny
  dataset: corpus.txt
  seq_len: 32
  batch_size: 8
  max_steps: 12
  warmup_steps: 0
  eval_every: 4
  save_every: 12
  log_every: 2
  eval_batches: 1
  eval_ratios: [0.5, 1.0]
  mixed_precision: "no"
  scratch: {layers: 1, hidden: 32, heads: 2, vocab_size: 400}
method: grid
parameters:
  lr: {values: [1.0e-6, 2.0e-6, 3.0e-6, 3.0e-3]}
run_cap: 4
concurrency: 1
early_terminate: {type: successive_halving, min_iter: 1, eta: 2}
"""


def _shot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"sweep-{name}.png"), full_page=True)


def test_a_sweep_from_the_form_runs_prunes_and_draws(server, page):  # noqa: F811
    base = server
    goto(page, f"{base}/sweeps")
    page.fill('input[name="password"]', PASSWORD)
    page.click('form#login button[type="submit"]')
    page.wait_for_url(re.compile(r"/sweeps$"))

    # A mistake first: named in the form, nothing stored.
    page.fill("#sweep-file", SWEEP.replace("lr:", "nope:"))
    page.click('#sweep-form button[type="submit"]')
    assert "parameters.nope" in page.inner_text("#sweep-errors")
    assert "No sweep yet" in page.inner_text("#sweeps")

    page.fill("#sweep-file", SWEEP)
    page.click('#sweep-form button[type="submit"]')
    page.wait_for_url(re.compile(r"/sweeps/1$"))
    assert "Sweep 1 created" in page.inner_text("main")
    # Live: the trials table fills in without a reload.
    page.wait_for_selector('#trials tr[data-state="running"]')
    _shot(page, "running")

    deadline = time.monotonic() + 2 * TIMEOUT_MS / 1000
    while (sweep := page.request.get(f"{base}/api/sweeps/1").json())["status"] != "finished":
        assert sweep["status"] == "running", sweep
        assert time.monotonic() < deadline, f"sweep still running: {sweep['counts']}"
        time.sleep(1.0)
    states = [t["state"] for t in sweep["trials"]]
    assert len(states) == 4 and states[0] == "complete", states
    assert states.count("pruned") >= 2, states  # cut at their first evaluation
    assert sweep["trials"][0]["params"]["lr"] == 3e-3
    pruned = [t for t in sweep["trials"] if t["state"] == "pruned"]
    assert all(t["pruned_at"] == 4 and t["steps"] < 12 for t in pruned), pruned

    goto(page, f"{base}/sweeps/1")
    page.wait_for_selector("#chart-best .uplot canvas")
    # Every ended trial is a line across both axes (a pruned one ends at its last report).
    lines = page.locator("#chart-parallel polyline")
    assert lines.count() == 4
    assert all(len(lines.nth(i).get_attribute("points").split()) == 2 for i in range(4))
    assert page.locator("#trials tbody tr").count() == 4
    assert "at step 4, pruned" in page.inner_text("#trials")
    assert page.inner_text("#importance")  # the scores, or why there are none yet
    _shot(page, "finished")

    # A trial's run links back to its sweep.
    page.locator("#trials tbody tr").first.locator("a").first.click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    assert "of sweep browser-sweep" in page.inner_text("#run-sweep")
    assert not page.js_errors, page.js_errors
