"""The run page: status, charts' data, checkpoints, settings, lineage, the log tail, and
cancel / retry through real forms on a real database."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from shared import job_reads, jobs, submit
from shared.contracts.specs import TrainSpec
from shared.db import session_scope
from shared.models import Checkpoint, Job, JobStatus, Run, utcnow
from shared.settings import get_settings
from tests.web.conftest import csrf_token
from tests.web.seed import add_run, add_sample_set, ce
from web.queries.curves import MAX_POINTS

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _queue_train(name: str = "queued") -> tuple[int, int]:
    job = submit.submit_train(TrainSpec.from_preset("tiny", max_steps=5), name=name)
    return job.run_id, job.id


def _train_job(run_id: int) -> Job:
    with session_scope() as s:
        return s.scalars(select(Job).where(Job.run_id == run_id).order_by(Job.id)).first()


def _config(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="run-config">(.*?)</script>', html)
    assert match, "no run-config on the page"
    return json.loads(match.group(1))


def test_the_page_shows_progress_checkpoints_settings_and_lineage(client):
    run_id = add_run("alpha", steps=400, tags=["baseline"])
    set_id = add_sample_set(run_id, ["In the beginning was the word"])
    with session_scope() as s:
        ckpts = list(
            s.scalars(select(Checkpoint.id).where(Checkpoint.run_id == run_id).order_by("step"))
        )

    r = client.get(f"/runs/{run_id}")
    assert r.status_code == 200
    html = r.text
    assert "<h1>alpha <small>run" in html and '<span class="tag">baseline</span>' in html
    assert '<span class="badge succeeded">succeeded</span>' in html
    assert 'step <span class="step">400</span> of 400' in html
    # Checkpoints, newest first, each with its "generate from this" link.
    rows = re.findall(r'<tr data-checkpoint="(\d+)">', html)
    assert [int(x) for x in rows] == ckpts[::-1]
    for c in ckpts:
        assert f'href="/generate?checkpoint={c}"' in html
    assert f"file:///nowhere/run-{run_id}/step-400" in html
    # Settings: the spec, flattened.
    assert (
        '<tr data-field="masking.mode"><td><code>masking.mode</code></td><td>grid</td></tr>' in html
    )
    assert '<tr data-field="max_steps"><td><code>max_steps</code></td><td>400</td></tr>' in html
    # Lineage: the sample set made from its checkpoint.
    assert f'href="/sample-sets/{set_id}"' in html
    # Jobs: the training job and the generation job.
    assert len(re.findall(r'<tr data-job="\d+">', html)) == 2
    # Finished: no cancel, no retry; clone always.
    assert 'id="cancel-form"' not in html and 'id="retry-form"' not in html
    assert f'href="/runs/new?clone={run_id}"' in html
    # The script's addresses: the JSON API and the log fragment.
    cfg = _config(html)
    assert cfg["curvesUrl"] == f"/api/runs/{run_id}/curves"
    assert cfg["runUrl"] == f"/api/runs/{run_id}" and cfg["logUrl"] == f"/runs/{run_id}/log"
    assert cfg["status"] == "succeeded"
    assert "/static/run.js" in html


def test_a_queued_run_is_live_and_cancel_works(client):
    run_id, job_id = _queue_train()
    html = client.get(f"/runs/{run_id}").text
    assert '<span class="badge queued">queued</span>' in html
    assert _config(html)["status"] == "queued" and _config(html)["pollMs"] == 3000
    assert 'id="cancel-form"' in html and 'id="retry-form"' not in html
    assert f"No log yet: job {job_id} has not started." in html
    assert "No checkpoint yet." in html

    form = html.split('id="cancel-form"', 1)[1].split("</form>", 1)[0]
    assert 'name="csrf_token"' in form
    r = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf_token(html)})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/runs/{run_id}")
    assert job_reads.get_job(job_id).status == JobStatus.CANCELLED
    html = client.get(f"/runs/{run_id}").text
    assert f"Run {run_id} is cancelled." in html
    assert '<span class="badge cancelled">cancelled</span>' in html
    assert 'id="retry-form"' in html and 'id="cancel-form"' not in html

    # ... and a cancelled run can be retried.
    r = client.post(f"/runs/{run_id}/retry", data={"csrf_token": csrf_token(html)})
    assert r.status_code == 302
    job = job_reads.get_job(job_id)
    assert job.status == JobStatus.QUEUED and job.attempts == 0 and not job.cancel_requested
    assert f"Run {run_id} is queued again (job {job_id})" in client.get(f"/runs/{run_id}").text


def test_cancel_of_a_running_job_is_a_request(client):
    run_id, job_id = _queue_train()
    assert jobs.claim(job_id, "cpu-1@laptop") is not None
    page = client.get(f"/runs/{run_id}").text
    client.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf_token(page)})
    job = job_reads.get_job(job_id)
    assert job.status == JobStatus.RUNNING and job.cancel_requested
    html = client.get(f"/runs/{run_id}").text
    assert "Cancel requested: run" in html and "cancel requested</small>" in html


def test_a_failed_run_is_retried_and_a_queued_one_is_refused(client):
    run_id = add_run("broken", status=JobStatus.FAILED, steps=400, progress_step=200)
    job_id = _train_job(run_id).id
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(error="Traceback\nValueError: NaN"))
    html = client.get(f"/runs/{run_id}").text
    assert 'id="retry-form"' in html and 'id="cancel-form"' not in html
    assert "<summary>ValueError: NaN</summary>" in html  # the error's last line

    r = client.post(f"/runs/{run_id}/retry", data={"csrf_token": csrf_token(html)})
    assert r.status_code == 302
    assert job_reads.get_job(job_id).status == JobStatus.QUEUED
    with session_scope() as s:
        assert s.get(Run, run_id).status == JobStatus.QUEUED

    # Queued now: a second retry is refused with the reason, and changes nothing.
    r = client.post(f"/runs/{run_id}/retry", data={"csrf_token": csrf_token(html)})
    assert r.status_code == 302
    html = client.get(f"/runs/{run_id}").text
    assert f"Could not retry run {run_id}: job {job_id} is queued" in html
    assert job_reads.get_job(job_id).status == JobStatus.QUEUED


def test_posts_without_the_csrf_token_are_refused(client):
    run_id, job_id = _queue_train()
    r = client.post(f"/runs/{run_id}/cancel")
    assert r.status_code == 400 and "CSRF" in r.text
    r = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": "forged"})
    assert r.status_code == 400
    assert job_reads.get_job(job_id).status == JobStatus.QUEUED


def test_unknown_runs_are_404(client):
    token = csrf_token(client.get("/compare").text)
    for path in ("/runs/999", "/runs/999/log", "/runs/99999999999999999999"):
        r = client.get(path)
        assert r.status_code == 404, path
    assert "no run with id 999" in client.get("/runs/999").text
    assert client.post("/runs/999/cancel", data={"csrf_token": token}).status_code == 404
    assert client.post("/runs/999/retry", data={"csrf_token": token}).status_code == 404


def test_names_tags_and_errors_are_escaped(client):
    run_id = add_run(XSS, status=JobStatus.FAILED, tags=[XSS], progress_step=100)
    with session_scope() as s:
        s.execute(update(Job).where(Job.run_id == run_id).values(error=f"boom {XSS}"))
    html = client.get(f"/runs/{run_id}").text
    assert ESCAPED in html
    assert XSS not in html
    assert "alert(1)</script>" not in html


def _write_log(job_id: int, attempt: int, lines: list[str]) -> None:
    folder = get_settings().work_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"job-{job_id}-attempt-{attempt}.log").write_text("\n".join(lines) + "\n")


def test_the_log_tail_is_shown_escaped_and_refreshable(client):
    run_id = add_run("logged", status=JobStatus.RUNNING, progress_step=100)
    job_id = _train_job(run_id).id
    _write_log(job_id, 1, [f"line {i:03d}" for i in range(100)] + [f"done {XSS}"])

    html = client.get(f"/runs/{run_id}").text
    log = html.split('<div id="log"', 1)[1].split("</div>", 1)[0]
    assert "line 061" in log and "line 060" not in log  # the last 40 lines
    assert f"done {ESCAPED}" in log and XSS not in html
    assert f"job-{job_id}-attempt-1.log" in log

    r = client.get(f"/runs/{run_id}/log?lines=3")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert r.text.startswith('<div id="log"')
    assert re.findall(r"line \d+", r.text) == ["line 098", "line 099"]
    assert ESCAPED in r.text and XSS not in r.text
    assert "<html" not in r.text  # a fragment, not a page

    # A new attempt writes a new file: the page follows it.
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(attempts=2))
    _write_log(job_id, 2, ["resumed from step 100"])
    assert "resumed from step 100" in client.get(f"/runs/{run_id}/log").text
    assert client.get(f"/runs/{run_id}/log?lines=0").status_code == 400


def test_the_log_box_starts_at_its_first_line_as_a_terminal_shows_it(client):
    """Blank lines lead no tail, and a progress bar's carriage-return rewrites show as its
    last state (a line starting with a CR used to leave a blank line before it)."""
    run_id = add_run("bars", status=JobStatus.RUNNING, progress_step=100)
    job_id = _train_job(run_id).id
    folder = get_settings().work_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n\n\rloading  \n\r 10%\r 50%\r100%\nstep 2 loss 3.1\r\n\n\n"
    (folder / f"job-{job_id}-attempt-1.log").write_text(text, newline="")
    html = client.get(f"/runs/{run_id}").text
    pre = re.search(r"<pre>(.*?)</pre>", html, re.S).group(1)
    assert pre == "loading\n100%\nstep 2 loss 3.1"
    assert "last 3 lines" in html


def test_a_resumed_run_says_from_which_step(client, api):
    fresh = add_run("fresh", status=JobStatus.RUNNING, progress_step=100)
    resumed = add_run("resumed", status=JobStatus.RUNNING, progress_step=100)
    with session_scope() as s:
        s.execute(update(Run).where(Run.id == fresh).values(summary={"resumed_from_step": 0}))
        s.execute(update(Run).where(Run.id == resumed).values(summary={"resumed_from_step": 60}))
    html = client.get(f"/runs/{resumed}").text
    status = html.split('id="status"', 1)[1].split("</section>", 1)[0]
    assert re.search(r'resumed from step <span class="resumed">60</span>', status)
    assert '<small class="resumed-note" hidden>' in client.get(f"/runs/{fresh}").text
    assert '<small class="resumed-note">' in html
    assert api.get(f"/api/runs/{resumed}").json["summary"]["resumed_from_step"] == 60


def test_a_log_on_another_machine_names_its_worker(client):
    run_id = add_run("remote", status=JobStatus.RUNNING, progress_step=100)
    with session_scope() as s:
        s.execute(update(Job).where(Job.run_id == run_id).values(worker="gpu-box@a100"))
    html = client.get(f"/runs/{run_id}").text
    assert "The log is on worker gpu-box@a100" in html
    assert "not on this machine" in html


def test_curves_are_downsampled_keeping_first_and_last(api):
    ratios = (0.25, 0.5, 1.0)
    run_id = add_run("long", steps=1000, eval_every=1, log_every=1, ratios=ratios)

    curves = api.get(f"/api/runs/{run_id}/curves?max_points=50").json
    steps = curves["eval"]["steps"]
    assert 2 <= len(steps) <= 50
    assert steps[0] == 1 and steps[-1] == 1000
    assert steps == sorted(set(steps))
    assert curves["ratios"] == list(ratios)
    for r in ratios:
        values = curves["eval"]["loss"][f"{r:g}"]
        assert len(values) == len(steps)
        assert values == pytest.approx([ce(r, k) for k in steps])
    assert None not in curves["eval"]["bound"]
    assert len(curves["eval"]["tokens"]) == len(steps)
    train = curves["train"]["step"]
    assert len(train) <= 50 and train[-1] == 1000

    default = api.get(f"/api/runs/{run_id}/curves").json["eval"]["steps"]
    assert len(default) <= MAX_POINTS and default[0] == 1 and default[-1] == 1000
    everything = api.get(f"/api/runs/{run_id}/curves?max_points=5000").json["eval"]["steps"]
    assert everything == list(range(1, 1001))


def _set_running(run_id: int, *, loaded_s: float, training_s: float, start_step: int = 0) -> None:
    """The run's job started `loaded_s + training_s` ago; its training loop `training_s` ago
    (what the worker writes to the summary once the model and data are loaded)."""
    now = utcnow()
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.run_id == run_id)
            .values(started_at=now - timedelta(seconds=loaded_s + training_s))
        )
        began = (now - timedelta(seconds=training_s)).isoformat()
        s.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(summary={"train_started_at": began, "train_start_step": start_step})
        )


def test_the_eta_counts_training_time_only_and_a_finished_run_has_none(client, api):
    # Half done after 10 s of training, following 90 s of loading: about 10 s left, where
    # the job's start would say 100 s.
    run_id = add_run("eta", status=JobStatus.RUNNING, steps=100, progress_step=50)
    _set_running(run_id, loaded_s=90, training_s=10)
    eta = api.get(f"/api/runs/{run_id}").json["eta_s"]
    assert 9 <= eta <= 13
    # Resumed at step 40: 10 steps in 10 s, 50 to go.
    _set_running(run_id, loaded_s=90, training_s=10, start_step=40)
    assert 49 <= api.get(f"/api/runs/{run_id}").json["eta_s"] <= 55
    # A new attempt still loading: the mark is the last attempt's, so no estimate yet.
    with session_scope() as s:
        s.execute(update(Job).where(Job.run_id == run_id).values(started_at=utcnow()))
    assert api.get(f"/api/runs/{run_id}").json["eta_s"] is None

    done = add_run("done", steps=100)
    assert api.get(f"/api/runs/{done}").json["eta_s"] is None
    status = client.get(f"/runs/{done}").text.split('id="status"', 1)[1].split("</section>")[0]
    assert '<span class="eta"></span>' in status


def test_before_its_first_evaluation_a_run_says_so_instead_of_an_empty_label(client, api):
    run_id = add_run(
        "ar-early",
        status=JobStatus.RUNNING,
        steps=100,
        progress_step=5,
        spec_overrides={"objective": "ar"},
    )
    row = api.get(f"/api/runs/{run_id}").json
    assert row["ppl_pending"] is True and row["ppl_bound"] is None
    html = client.get(f"/runs/{run_id}").text
    values = re.findall(r'<span class="ppl-value"[^>]*>(.*?)</span></span>', html)
    assert len(values) == 2  # the header and the AR card
    for v in values:
        assert '<span class="ppl-kind" hidden>AR: exactly </span>' in v
        assert v.endswith('<span class="bound">pending first evaluation')
    assert '<small class="nll" hidden>' in html
    assert "pending first evaluation" in client.get("/runs").text

    with session_scope() as s:
        s.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(summary={"ppl_bound": 130.2, "nll_bound": 4.87})
        )
    assert api.get(f"/api/runs/{run_id}").json["ppl_pending"] is False
    html = client.get(f"/runs/{run_id}").text
    values = re.findall(r'<span class="ppl-value"[^>]*>(.*?)</span></span>', html)
    assert len(values) == 2
    for v in values:
        assert v.endswith('<span class="ppl-kind">AR: exactly </span><span class="bound">130')
    # A run that ended without an evaluation is not "pending".
    failed = add_run("failed-early", status=JobStatus.FAILED, steps=100, progress_step=5)
    assert '<span class="bound">not evaluated</span>' in client.get(f"/runs/{failed}").text
