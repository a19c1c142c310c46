"""Pages in a real browser as the data under them changes and at a laptop's width: the run
page keeps its header, charts and tables in step with a running job, and the compare page
fits a 1366 px screen. The job's rows are written by the worker's own result writers."""

from __future__ import annotations

from sqlalchemy import update

from shared import jobs, submit
from shared.contracts.specs import TrainSpec
from shared.db import session_scope
from shared.models import Job, JobStatus, Run, SampleSet, utcnow
from tests.jobs.helpers import REPO
from tests.web.seed import add_run, add_sample_set
from worker import results

WAIT_MS = 15_000  # the page polls every 3 s
ARTIFACTS = REPO / "test-artifacts"


def _log_steps(claim: jobs.Claim, run_id: int, first: int, last: int) -> None:
    """Loss points first..last and the run's progress, as a training job writes them."""
    points = [
        {"step": k, "loss": 6.0 - k / 100, "tokens_seen": k * 512, "elapsed_s": k / 10}
        for k in range(first, last + 1)
    ]
    results.add_loss_points(claim, run_id, points, {"step": last, "tokens_seen": last * 512})


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_the_run_page_keeps_header_charts_and_tables_in_step(browser):
    page, base, errors = browser
    job = submit.submit_train(TrainSpec.from_preset("tiny", max_steps=300), name="live")
    run_id = job.run_id
    page.goto(f"{base}/runs/{run_id}")
    assert "queued" in _text(page, "#status .badge")
    assert "0 / 3" in _text(page, f'#jobs tr[data-job="{job.id}"]')

    # A worker claims the job and logs 160 steps, evaluates and saves a checkpoint.
    now = utcnow()
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(status=JobStatus.RUNNING, attempts=1, worker="w1@box", started_at=now)
        )
        s.execute(
            update(Run).where(Run.id == run_id).values(status=JobStatus.RUNNING, started_at=now)
        )
    claim = jobs.Claim(job.id, 1, "w1@box")
    _log_steps(claim, run_id, 1, 160)
    results.put_eval_points(
        claim, run_id, 160, [{"ratio": r, "loss": 5.0, "accuracy": 0.2} for r in (0.5, 1.0)]
    )
    results.merge_run_summary(claim, run_id, {"bound_step": 160, "resumed_from_step": 0})
    results.put_checkpoint(claim, run_id, 160, "file:///nowhere/checkpoint-160", {"loss": 4.4})

    page.wait_for_function(
        "() => document.querySelector('#status .step').textContent === '160'", timeout=WAIT_MS
    )
    assert _text(page, "#status .badge") == "running"
    row = _text(page, f'#jobs tr[data-job="{job.id}"]')
    assert "running" in row and "1 / 3" in row and "w1@box" in row
    assert "step 160," in _text(page, "#train-now")
    assert _text(page, "#checkpoint-count") == "1"
    assert page.locator("#checkpoints tr[data-checkpoint]").count() == 1
    assert page.locator("#chart-ratios .uplot canvas").count() == 1

    # More steps: whenever the header shows a step, the training chart ends at it.
    _log_steps(claim, run_id, 161, 300)
    page.wait_for_function(
        "() => document.querySelector('#status .step').textContent === '300'", timeout=WAIT_MS
    )
    assert "step 300," in _text(page, "#train-now")
    assert errors == []


# The sample metrics a generation job records (worker.diffusion.evaluation.sample_metrics
# and worker.bodies.generate): enough columns to be wider than a laptop's screen if they do
# not wrap.
SAMPLE_METRICS = {
    "mean_length": 31.5,
    "entropy": 4.21,
    "distinct_1": 0.61,
    "distinct_2": 0.83,
    "distinct_3": 0.91,
    "repetition_rate": 0.04,
    "max_token_share": 0.07,
    "self_bleu": 0.22,
    "real_word_share": 0.95,
    "seconds": 12.3,
    "forward_passes": 64.0,
}


def test_compare_fits_a_1366_px_screen(browser):
    page, base, errors = browser
    path = "uploads/" + "a-rather-long-corpus-file-name-with-no-spaces-at-all" * 2 + ".txt"
    ids = []
    for i in range(8):
        run_id = add_run(
            f"minilm-sweep-lr-{i}e-4-masking-uniform-{i}",
            steps=200,
            offset=i / 10,
            spec_overrides={"lr": (i + 1) * 1e-4, "dataset": path},
        )
        add_sample_set(run_id, [f"In the beginning God created the heaven and the earth {i}"])
        ids.append(run_id)
    with session_scope() as s:
        s.execute(update(SampleSet).values(metrics=SAMPLE_METRICS))

    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{base}/compare?runs={','.join(map(str, ids))}")
    page.wait_for_selector("#chart-curves .uplot canvas")
    page.check("#show-all-settings")  # every setting, the long dataset path included
    assert page.locator('#settings-diff tr[data-field="dataset"]').is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare-1366.png"), full_page=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    # Nothing pokes out of the window either (a scrolling box inside its card is fine).
    spill = page.evaluate(
        """() => [...document.querySelectorAll('main table, main .card, main > *')]
            .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth)
            .map((el) => `${el.tagName}#${el.id}.${el.className}`)"""
    )
    assert width <= 1366 and spill == [], f"{width} px wide at a 1366 px viewport: {spill}"
    assert errors == []
