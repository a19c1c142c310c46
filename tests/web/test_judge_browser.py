"""An AR run and a diffusion run in a real browser, end to end: queued from the new-run
form (`text-diffusion up`: embedded database, broker and worker), compared with bound vs
exact perplexity, sampled with a judge (judge perplexity beside token entropy; MAUVE with 100
samples, its reason with fewer). The frontier over such checkpoints is
tests/web/test_frontier_browser.py's. Screenshots of each page go to test-artifacts/ (for a
person to look at; the assertions do not read them)."""

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
    wait_for_run,
)

# A judged set's quality as the page reads it: judge ppl beside token entropy and the share
# of repeated 4-grams, then MAUVE.
JUDGED = r"judge ppl [\d.]+ token entropy [\d.]+ repeats [\d.]+ MAUVE 0?\.\d+"


def _shot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"judge-{name}.png"), full_page=True)


def _queue(tab, base: str, name: str, objective: str) -> int:
    goto(tab, f"{base}/runs/new?preset=tiny")
    values = {
        "name": name,
        "dataset": "corpus.txt",
        "val_fraction": "0.25",  # enough held-out text for 100 MAUVE references
        "seq_len": "32",
        "batch_size": "8",
        "max_steps": "30",
        "warmup_steps": "2",
        "eval_every": "10",
        "save_every": "30",
        "log_every": "2",
        "eval_batches": "1",
        "lr": "0.002",
        "scratch.layers": "2",
        "scratch.hidden": "64",
        "scratch.heads": "2",
        "scratch.vocab_size": "400",
    }
    form = tab.locator("form#new-run")
    for field, value in values.items():
        form.locator(f'[name="{field}"]').fill(value)
    form.locator('[name="mixed_precision"]').select_option("no")
    form.locator('[name="objective"]').select_option(objective)
    form.locator('button[type="submit"]').click()
    tab.wait_for_url(re.compile(r"/runs/\d+$"))
    return int(tab.url.rsplit("/", 1)[1])


def _checkpoint(tab, base: str, run_id: int) -> int:
    return tab.request.get(f"{base}/api/runs/{run_id}").json()["checkpoints"][-1]["id"]


def _generate(tab, base: str, checkpoint: int, judge: int, samples: int) -> int:
    goto(tab, f"{base}/generate?checkpoint={checkpoint}")
    form = tab.locator("form#generate")
    form.locator('[name="length"]').fill("8")
    form.locator('[name="num_samples"]').fill(str(samples))
    form.locator('[name="judge"]').select_option(str(judge))  # picked from the list
    record = form.locator('[name="record_trajectory"]')
    if record.is_checked():
        record.uncheck()
    form.locator('button[type="submit"]').click()
    tab.wait_for_load_state()
    flash = tab.inner_text("main")
    assert "queued" in flash, flash
    return int(re.search(r"Job (\d+) queued", flash).group(1))


def _sample_set_of(tab, base: str, job_id: int) -> int:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        job = tab.request.get(f"{base}/api/jobs/{job_id}").json()
        assert job["status"] not in ("failed", "cancelled"), job
        if job["status"] == "succeeded":
            sets = tab.request.get(f"{base}/api/sample-sets").json()
            return next(s["id"] for s in sets if s["job_id"] == job_id)
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(1.0)


def _quality(tab) -> str:
    return re.sub(r"\s+", " ", tab.inner_text("#quality"))


def test_ar_and_diffusion_judged_and_compared(server, page):  # noqa: F811
    base = server
    goto(page, f"{base}/runs")
    page.fill('input[name="password"]', PASSWORD)
    page.click('form#login button[type="submit"]')
    page.wait_for_url(f"{base}/runs")

    ar = _queue(page, base, "ar baseline", "ar")
    diffusion = _queue(page, base, "diffusion run", "diffusion")
    wait_for_run(page, base, ar)
    wait_for_run(page, base, diffusion)

    # The runs list and compare: "diffusion: bound ≤ X" beside "AR: exactly Y".
    goto(page, f"{base}/runs")
    runs = page.inner_text("#runs")
    assert re.search(r"AR: exactly \d", runs) and re.search(r"diffusion: bound ≤ \d", runs)
    _shot(page, "runs")
    goto(page, f"{base}/runs/{ar}")
    assert "do not apply" in page.inner_text("#ar-note")
    assert page.locator("#chart-ratios").count() == 0
    page.wait_for_selector("#chart-train .uplot canvas")
    _shot(page, "ar-run")

    ar_ckpt = _checkpoint(page, base, ar)
    diff_ckpt = _checkpoint(page, base, diffusion)
    # 100 samples each: enough for MAUVE (the frontier's sets of 4 below say why they have none).
    ar_set = _sample_set_of(page, base, _generate(page, base, ar_ckpt, ar_ckpt, 100))
    diff_set = _sample_set_of(page, base, _generate(page, base, diff_ckpt, ar_ckpt, 100))

    goto(page, f"{base}/sample-sets/{ar_set}")
    quality = _quality(page)
    assert re.search(JUDGED, quality), quality
    _shot(page, "ar-sample-set")
    goto(page, f"{base}/sample-sets/{diff_set}")
    quality = _quality(page)
    assert re.search(JUDGED, quality), quality
    _shot(page, "diffusion-sample-set")

    goto(page, f"{base}/compare?runs={diffusion},{ar}")
    bounds = page.inner_text("#bounds")
    assert re.search(r"diffusion: bound ≤ \d", bounds) and re.search(r"AR: exactly \d", bounds)
    metrics = page.inner_text("#sample-metrics")
    assert len(re.findall(r"judge ppl [\d.]+\s+token entropy [\d.]+", metrics)) == 2, metrics
    assert "no per-mask-ratio curves" in page.inner_text("#ar-curves-note")
    page.wait_for_selector("#chart-vs-ratio .uplot canvas")
    labels = page.locator("#chart-vs-ratio .u-legend .u-series .u-label").all_inner_texts()
    assert "ar baseline (AR: no mask ratios)" in labels, labels
    _shot(page, "compare")

    goto(page, f"{base}/sample-sets")
    assert len(re.findall(r"judge ppl [\d.]+\s+token entropy [\d.]+", page.inner_text("main"))) == 2
    _shot(page, "sample-sets")
    assert page.js_errors == []
