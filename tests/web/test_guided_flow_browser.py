"""The user flow of issue 21 in a real browser at 1366×768: a diffusion and an AR run queued
from the new-run form (the objective chosen at its top), a judged sample set from each (the
judge picked from a list; the AR run's checkpoint, to keep the test fast), and compare.

On every page it visits it asserts what a newcomer saw go wrong: no perplexity label
without its number ("bound ≤" / "AR: exactly" before the first evaluation), no "0s" ETA on
a finished run, no unmasking label on an AR run's sample set, the two entropies named apart,
and no element wider than its box (`OVERFLOW`: scrollWidth > clientWidth, outside the boxes
that are meant to scroll or clip). Screenshots go to test-artifacts/guided-*.png.
"""

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

VIEWPORT = {"width": 1366, "height": 768}
# Every box whose content is wider than it, outside those meant to scroll or clip (the log,
# clipped cells, charts, form controls). A `.table-wide` scroll box counts: a table that
# needs it hides its last columns at this width.
OVERFLOW = """() => {
  const skip = "pre, .clip, .uplot, canvas, svg, input, select, textarea, option";
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest(skip)) continue;
    const display = getComputedStyle(el).display;
    if (display === "inline" || display === "none" || display === "contents") continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      const cls = typeof el.className === "string" ? el.className.trim() : "";
      const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
        + (cls ? "." + cls.split(/\\s+/).join(".") : "");
      out.push(`${name}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth) {
    out.push(`document: ${doc.scrollWidth} > ${doc.clientWidth}`);
  }
  return out;
}"""
# A perplexity label with no number after it.
EMPTY_PPL = re.compile(r"(bound ≤|AR: exactly)[ \t]*(\)|\n|$)")
# "entropy" with a number, named neither token nor word entropy.
BARE_ENTROPY = re.compile(r"(?<!token )(?<!word )(?<!unigram )\bentropy[ \t:]+\d")
UNMASKING_LABELS = ("steps", "strategy", "schedule", "threshold", "block_length", "entropy ·")


def _check(tab, name: str) -> str:
    """Screenshot the page, assert the labels and widths every page must get right, and
    return its main text."""
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"guided-{name}.png"), full_page=True)
    text = tab.inner_text("main")
    assert not EMPTY_PPL.search(text), (name, EMPTY_PPL.search(text))
    assert not BARE_ENTROPY.search(text), (name, BARE_ENTROPY.search(text))
    assert "word_entropy" not in text, name
    assert tab.evaluate(OVERFLOW) == [], name
    return text


def _queue(tab, base: str, name: str, objective: str) -> int:
    goto(tab, f"{base}/runs/new?preset=tiny")
    form = tab.locator("form#new-run")
    # The objective is the form's first field, above the model and data.
    assert form.locator("[data-field]").first.get_attribute("data-field") == "objective"
    form.locator('[name="objective"]').select_option(objective)
    values = {
        "name": name,
        "dataset": "corpus.txt",
        "seq_len": "32",
        "batch_size": "8",
        "max_steps": "20",
        "warmup_steps": "2",
        "eval_every": "10",
        "save_every": "20",
        "log_every": "2",
        "eval_batches": "1",
        "lr": "0.002",
        "scratch.layers": "2",
        "scratch.hidden": "64",
        "scratch.heads": "2",
        "scratch.vocab_size": "400",
    }
    for field, value in values.items():
        form.locator(f'[name="{field}"]').fill(value)
    form.locator('[name="mixed_precision"]').select_option("no")
    form.locator('button[type="submit"]').click()
    tab.wait_for_url(re.compile(r"/runs/\d+$"))
    return int(tab.url.rsplit("/", 1)[1])


def _generate(tab, base: str, checkpoint: int, judge: int) -> int:
    """Queue a judged generation from the form, the judge picked from its list."""
    goto(tab, f"{base}/generate?checkpoint={checkpoint}")
    form = tab.locator("form#generate")
    form.locator('[name="length"]').fill("8")
    form.locator('[name="num_samples"]').fill("4")
    form.locator('[name="judge"]').select_option(str(judge))
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
        time.sleep(0.5)


def test_the_guided_flow_reads_right_at_1366(server, page):  # noqa: F811
    base = server
    page.set_viewport_size(VIEWPORT)
    goto(page, f"{base}/runs")
    page.fill('input[name="password"]', PASSWORD)
    page.click('form#login button[type="submit"]')
    page.wait_for_url(f"{base}/runs")

    diffusion = _queue(page, base, "guided diffusion", "diffusion")
    _check(page, "new-diffusion-run")
    ar = _queue(page, base, "guided ar", "ar")
    # Queued behind the first run: no evaluation yet, and the page says so.
    header = page.inner_text("#status")
    if page.request.get(f"{base}/api/runs/{ar}").json()["ppl_pending"]:
        assert "pending first evaluation" in header, header
    _check(page, "queued-ar-run")
    goto(page, f"{base}/runs")
    _check(page, "runs-live")
    wait_for_run(page, base, diffusion)
    wait_for_run(page, base, ar)

    # Finished: no ETA; the AR card shows the header's figure.
    goto(page, f"{base}/runs/{ar}")
    assert page.inner_text("#status .eta") == ""
    figures = page.locator(".ppl-value .bound").all_inner_texts()
    assert len(figures) == 2 and figures[0] == figures[1] and re.match(r"\d", figures[0])
    _check(page, "ar-run")
    goto(page, f"{base}/runs")
    _check(page, "runs")

    # Generate: checkpoints say their objective, the newest diffusion one is picked, and an
    # AR checkpoint hides the unmasking fields.
    checkpoints = {
        run: page.request.get(f"{base}/api/runs/{run}").json()["checkpoints"][-1]["id"]
        for run in (diffusion, ar)
    }
    goto(page, f"{base}/generate")
    picked = page.locator('select[name="checkpoint"]')
    assert picked.input_value() == str(checkpoints[diffusion])
    ar_label = picked.locator(f'option[value="{checkpoints[ar]}"]').inner_text()
    assert "· AR (" in ar_label, ar_label
    judges = page.locator('select[name="judge"] option').all_inner_texts()
    assert judges[0] == "none" and any(j.endswith("(packaged)") for j in judges), judges
    assert any(j.startswith(f"AR checkpoint {checkpoints[ar]}") for j in judges), judges
    steps = page.locator('[data-field="grid.steps"]')
    assert steps.is_visible()
    _check(page, "generate-diffusion")
    picked.select_option(str(checkpoints[ar]))
    assert not steps.is_visible() and page.locator("#ar-grid-note").is_visible()
    assert not page.locator('[data-field="grid.strategies"]').is_visible()
    _check(page, "generate-ar")

    ar_set = _sample_set_of(page, base, _generate(page, base, checkpoints[ar], checkpoints[ar]))
    diff_set = _sample_set_of(
        page, base, _generate(page, base, checkpoints[diffusion], checkpoints[ar])
    )

    # An AR set: no unmasking label in its header or settings; the judged entropy is the
    # token entropy.
    goto(page, f"{base}/sample-sets/{ar_set}")
    for where in ("h1", "#settings"):
        text = page.inner_text(where)
        assert not [x for x in UNMASKING_LABELS if x in text], (where, text)
    assert re.search(r"judge ppl [\d.]+ token entropy [\d.]+", page.inner_text("#quality"))
    _check(page, "ar-sample-set")
    goto(page, f"{base}/sample-sets/{diff_set}")
    assert "steps=" in page.inner_text("h1")  # a diffusion set keeps its settings
    _check(page, "diffusion-sample-set")
    goto(page, f"{base}/sample-sets")
    assert "word entropy" in page.inner_text("#sample-sets thead")
    _check(page, "sample-sets")

    # Compare: both bounds, both sets' metrics, the AR sample beside the diffusion one
    # without unmasking labels, nothing wider than the page.
    goto(page, f"{base}/compare?runs={diffusion},{ar}")
    page.wait_for_selector("#chart-vs-ratio .uplot canvas")
    bounds = page.inner_text("#bounds")
    assert re.search(r"diffusion: bound ≤ \d", bounds) and re.search(r"AR: exactly \d", bounds)
    assert f"set {ar_set}" in bounds and f"set {diff_set}" in bounds
    metrics = page.inner_text("#sample-metrics")
    assert len(re.findall(r"token entropy [\d.]+", metrics)) == 2, metrics
    for pair in page.locator(".sample-pair").all():
        assert not [x for x in UNMASKING_LABELS if x in pair.locator("p.help").first.inner_text()]
        ar_col = pair.locator(f'.sample-col[data-run="{ar}"] .own-settings')
        if ar_col.count():
            assert ar_col.inner_text() == "AR, token by token"
    _check(page, "compare")
    assert page.js_errors == [], page.js_errors
