"""The whole dashboard flow in a real browser: Playwright driving Debian's chromium, headless.

`text-diffusion up` runs as a newcomer starts it (embedded database and broker, its own
worker); the test logs in, queues two tiny training runs from the form, watches one
progress, sees its per-mask-ratio chart, generates a sample set, replays a trajectory and
compares the two runs. On failure a screenshot and the page's HTML go to
test-artifacts/ (and the server's output is printed).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.jobs.helpers import FAST_SETTINGS, REPO, write_dataset
from tests.processes import stop_tree
from tests.web.conftest import chromium

PASSWORD = "browser-test-password"
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`text-diffusion up` on a free port with a fresh data directory; yields its URL."""
    data_dir = tmp_path / "data"
    write_dataset(data_dir)  # data_dir/datasets/corpus.txt, inside the allowed data root
    env = {**os.environ, **FAST_SETTINGS, "DATA_DIR": str(data_dir), "REDIS_URL": ""}
    env.update(ADMIN_PASSWORD=PASSWORD, DATABASE_URL=f"sqlite:///{data_dir / 'td.db'}")
    port = _free_port()
    log = (tmp_path / "up.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "text_diffusion.cli", "up", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "is up at" not in (tmp_path / "up.log").read_text():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "up did not start in 60 s"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_tree(proc, signal.SIGINT, 60)  # and its worker, whatever happened
        print("---- text-diffusion up ----\n" + (tmp_path / "up.log").read_text()[-2000:])
        logs = data_dir / "up.log"  # the worker's and the server's logs
        print("---- DATA_DIR/up.log ----\n" + (logs.read_text()[-6000:] if logs.exists() else ""))


@pytest.fixture
def page(request):
    path = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        yield page
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = request.node.name
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            (ARTIFACTS / f"{name}.html").write_text(page.content())
            print(f"screenshot: {ARTIFACTS / name}.png; JS errors: {errors}")
        browser.close()


def goto(page, url: str) -> None:
    """page.goto, again if the page's own reload (a live run page reloads once when its run
    ends) aborted or interrupted the navigation: Chromium reports the race either way."""
    for attempt in range(3):
        try:
            page.goto(url)
            return
        except Exception as exc:
            raced = "ERR_ABORTED" in str(exc) or "interrupted by another navigation" in str(exc)
            if not raced or attempt == 2:
                raise
            page.wait_for_load_state()


def wait_for_run(page, base: str, run_id: int) -> None:
    """Poll the JSON API (no navigation) until the run succeeded; fail on failed."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        run = page.request.get(f"{base}/api/runs/{run_id}").json()
        if run["status"] == "succeeded":
            return
        assert run["status"] not in ("failed", "cancelled"), run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(1.0)


def queue_tiny_run(page, base: str, name: str, lr: str) -> int:
    """Fill the new-run form with the tiny preset, small enough to train in seconds."""
    goto(page, f"{base}/runs/new?preset=tiny")
    values = {
        "name": name,
        "dataset": "corpus.txt",
        "seq_len": "64",
        "batch_size": "8",
        "max_steps": "40",
        "warmup_steps": "2",
        "eval_every": "10",
        "save_every": "20",
        "log_every": "2",
        "eval_batches": "1",
        "lr": lr,
        "scratch.layers": "2",
        "scratch.hidden": "64",
        "scratch.heads": "2",
        "scratch.vocab_size": "400",
    }
    form = page.locator("form#new-run")
    for field, value in values.items():
        form.locator(f'[name="{field}"]').fill(value)
    form.locator('[name="mixed_precision"]').select_option("no")
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_newcomer_flow_in_a_real_browser(server, page):
    base = server
    # Log in (every page redirects there first).
    goto(page, f"{base}/runs")
    assert "/login" in page.url
    page.fill('input[name="password"]', PASSWORD)
    page.click('form#login button[type="submit"]')
    page.wait_for_url(f"{base}/runs")
    assert "No runs" in page.inner_text("main")

    # Queue a tiny training run and watch it progress on its page.
    first = queue_tiny_run(page, base, "browser <b>first</b>", "0.002")
    assert page.inner_text("h1").startswith("browser <b>first</b>")  # escaped, shown as text
    page.wait_for_function(
        "() => document.querySelector('#status .badge')?.textContent.trim() === 'running'"
        " || document.querySelector('#status .badge')?.textContent.trim() === 'succeeded'",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_function(
        "() => document.querySelector('#status .badge')?.textContent.trim() === 'succeeded'",
        timeout=TIMEOUT_MS,
    )
    # The live page fills its per-mask-ratio chart from the API: one curve per ratio.
    goto(page, f"{base}/runs/{first}")
    page.wait_for_selector("#chart-ratios .uplot canvas")
    ratios = page.request.get(f"{base}/api/runs/{first}/curves").json()["ratios"]
    assert len(ratios) >= 2, ratios
    labels = page.locator("#chart-ratios .u-legend .u-series .u-label").all_inner_texts()
    assert labels[1:] == [f"t={r:g}" for r in ratios]  # after the x series, one per ratio
    page.wait_for_selector("#chart-bound .uplot canvas")
    assert page.locator("#checkpoints tbody tr").count() >= 2

    # Generate a sample set from the first run's last checkpoint.
    goto(page, f"{base}/runs/{first}")
    page.locator("#checkpoints a", has_text="Generate").last.click()
    page.wait_for_url(re.compile(r"/generate\?checkpoint="))
    form = page.locator("form#generate")
    form.locator('[name="prompts"]').fill("In the beginning <script>alert(1)</script>")
    form.locator('[name="length"]').fill("12")  # the tiny model has 64 positions
    form.locator('[name="judge"]').select_option("")  # no judge; judging: test_judge_browser.py
    count = page.inner_text("#grid-count")
    assert "1 sample set" in count, count
    record = form.locator('[name="record_trajectory"]')
    if not record.is_checked():
        record.check()
    form.locator('button[type="submit"]').click()
    page.wait_for_load_state()
    assert "queued" in page.inner_text("main")

    # Its sample set appears in the run's lineage; open it and replay a trajectory.
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        goto(page, f"{base}/runs/{first}")
        link = page.locator("#lineage a[href*='/sample-sets/']")
        if link.count():
            break
        jobs = page.inner_text("#jobs")
        assert "failed" not in jobs, jobs
        assert time.monotonic() < deadline, "no sample set appeared"
        time.sleep(1.0)
    link.first.click()
    page.wait_for_url(re.compile(r"/sample-sets/\d+$"))
    assert "<script>alert(1)</script>" in page.inner_text("#samples")  # shown as text
    assert page.locator("#samples .prefix").count() >= 1
    page.locator(".traj-toggle").first.click()
    slider = page.locator("input[type=range][aria-label='denoising pass']").first
    slider.wait_for()
    strip = page.locator(".traj-tokens").first
    masked_at = {}
    for value in ("0", slider.get_attribute("max")):
        slider.fill(value)
        masked_at[value] = strip.locator(".tok.mask").count()
    first_pass, last_pass = masked_at.values()
    assert first_pass > last_pass == 0, masked_at

    # Clone the first run with another learning rate: the second run for the comparison.
    goto(page, f"{base}/runs/{first}")
    page.click("#clone")
    page.wait_for_url(re.compile(r"/runs/new\?clone="))
    assert page.locator('[name="max_steps"]').input_value() == "40"
    page.locator('[name="name"]').fill("browser second")
    page.locator('[name="lr"]').fill("0.001")
    page.locator('form#new-run button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    second = int(page.url.rsplit("/", 1)[1])

    # Compare the two runs: wait for the second to finish, pick both on the runs page.
    wait_for_run(page, base, second)
    goto(page, f"{base}/runs")
    page.check(f'input.pick[value="{first}"]')
    page.check(f'input.pick[value="{second}"]')
    page.click("#compare-selected")
    page.wait_for_url(re.compile(r"/compare\?runs="))
    page.wait_for_selector("#chart-curves .uplot canvas")
    diff = page.inner_text("#settings-diff")
    assert "lr" in diff and "max_steps" not in diff  # identical fields hidden by default
    assert page.js_errors == [], page.js_errors
