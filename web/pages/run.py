"""One run: live progress, loss curves by mask ratio, the bound, checkpoints, settings, jobs,
the training log's tail, and cancel / retry / clone.

The page renders `web.queries.run.run_detail`. While the run is live its script
(static/run.js) redraws every part of the page on each poll from one snapshot: the header
and the jobs, checkpoints and sample-set tables from /api/runs/<id>, the curves from
/api/runs/<id>/curves whenever the run's step or bound moved, and the log tail from
`/runs/<id>/log`, an escaped HTML fragment. Cancel and retry post small forms here and go
through `shared.jobs`, like the API.

The log is the file the worker's runner writes for each attempt of a job (see
`worker.runner.log_path`). On one machine the dashboard can read it; when the job ran on
a worker elsewhere the page says which worker holds it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import flash, redirect, render_template, render_template_string, request, url_for
from markupsafe import Markup

from shared import errors, jobs
from shared.contracts.limits import MAX_ID
from shared.db import read_scope
from shared.settings import get_settings
from web import args
from web.errors import NotFound
from web.pages import bp
from web.queries.jobs import get_job_row
from web.queries.run import flat_settings, run_detail, train_job_id

LOG_LINES = 40  # lines of the log tail shown
MAX_LOG_LINES = 500
TAIL_BYTES = 64 << 10  # read at most this much of the end of a log: lines are short
POLL_MS = 3000
LIVE = ("queued", "running")
# The sampler settings the lineage table shows, in this order.
SAMPLER_KEYS = ("sampling", "temperature", "steps", "strategy", "schedule")

# The log tail, as the page shows it and as `/runs/<id>/log` returns it (one template, so
# the fragment the script swaps in is the markup the page rendered). Autoescaped.
LOG_FRAGMENT = """\
<div id="log" class="log" data-attempt="{{ log.attempt or '' }}">
  {% if log.lines %}
  <p class="help">Job {{ log.job_id }}, attempt {{ log.attempt }}:
    last {{ log.lines|length }} lines of <code>{{ log.path }}</code></p>
  <pre>{{ log.lines|join('\\n') }}</pre>
  {% endif %}
  {% if log.note %}<p class="help log-note">{{ log.note }}</p>{% endif %}
</div>"""


def log_file(job_id: int, attempt: int) -> Path:
    """Where a worker on this machine writes the output of a job's attempt."""
    return get_settings().job_log(job_id, attempt)


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file as a terminal shows them, reading only its end.

    A progress bar rewrites its line with carriage returns: each line keeps what follows its
    last one. Blank lines at the start and end of the tail are left out.
    """
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    out = [_shown(line) for line in text.split("\n")]
    if size > TAIL_BYTES and out:
        out = out[1:]  # the first line is cut
    while out and not out[-1].strip():
        out.pop()
    out = out[-lines:]
    while out and not out[0].strip():
        out.pop(0)
    return out


def _shown(line: str) -> str:
    """What is left of a line after its carriage returns: the text after the last non-empty
    rewrite (a trailing CR, as in CRLF endings, rewrites nothing)."""
    parts = [p for p in line.split("\r") if p]
    return parts[-1].rstrip() if parts else ""


def _latest_attempt(job_id: int) -> int | None:
    """The highest attempt with a log file here (a retried job restarts its count at 0)."""
    folder = get_settings().work_dir / "logs"
    pattern = re.compile(rf"job-{job_id}-attempt-(\d+)\.log")
    found = [
        int(m.group(1))
        for p in folder.glob(f"job-{job_id}-attempt-*.log")
        if (m := pattern.fullmatch(p.name))
    ]
    return max(found) if found else None


def job_log(job: dict[str, Any] | None, lines: int = LOG_LINES) -> dict[str, Any]:
    """The tail of a job's newest log, or a note saying why it cannot be shown here."""
    if job is None:
        return {"job_id": None, "attempt": None, "lines": [], "note": "This run has no job."}
    job_id = job["id"]
    attempt = job["attempts"] if job["attempts"] else _latest_attempt(job_id)
    out = {"job_id": job_id, "attempt": attempt, "path": None, "lines": [], "note": None}
    if attempt is None:
        where = f" on worker {job['worker']}" if job["worker"] else ""
        out["note"] = (
            f"No log yet: job {job_id} has not started."
            if job["status"] == "queued" and not where
            else f"The log of job {job_id} is not on this machine{where}."
        )
        return out
    path = log_file(job_id, attempt)
    out["path"] = str(path)
    if not path.is_file():
        if job["worker"]:
            out["note"] = (
                f"The log is on worker {job['worker']}: attempt {attempt} of job {job_id} "
                f"ran there, and {path.name} is not on this machine."
            )
        else:
            out["note"] = f"The log of attempt {attempt} of job {job_id} is not on this machine."
        return out
    out["lines"] = tail(path, lines)
    if not out["lines"]:
        out["note"] = "The log is empty so far."
    return out


def render_log(log: dict[str, Any]) -> Markup:
    return Markup(render_template_string(LOG_FRAGMENT, log=log))


def _train_job(detail: dict[str, Any]) -> dict[str, Any] | None:
    return next((j for j in detail["jobs"] if j["id"] == detail["job_id"]), None)


@bp.get("/runs/<int:run_id>")
def run(run_id: int):
    if run_id > MAX_ID:
        raise NotFound(f"no run with id {run_id}")
    with read_scope() as s:
        detail = run_detail(s, run_id)
    settings = flat_settings(detail["spec"])
    log = job_log(_train_job(detail))
    return render_template(
        "run.html",
        run=detail,
        settings=settings,
        log_html=render_log(log),
        live=detail["status"] in LIVE,
        poll_ms=POLL_MS,
        sampler_keys=SAMPLER_KEYS,
    )


@bp.get("/runs/<int:run_id>/log")
def run_log(run_id: int):
    """The log tail as an HTML fragment (escaped), for the page's script to swap in."""
    if run_id > MAX_ID:
        raise NotFound(f"no run with id {run_id}")
    lines = args.int_arg(request.args, "lines", LOG_LINES, 1, MAX_LOG_LINES)
    with read_scope() as s:
        job_id = train_job_id(s, run_id)
        job = get_job_row(s, job_id) if job_id is not None else None
    return render_log(job_log(job, lines))


def _act(run_id: int, action: str):
    """Cancel or retry the run's training job, then back to the run with a message."""
    back = redirect(url_for("pages.run", run_id=run_id))
    if run_id > MAX_ID:
        raise NotFound(f"no run with id {run_id}")
    with read_scope() as s:
        job_id = train_job_id(s, run_id)
    if job_id is None:
        flash(f"Run {run_id} has no training job to {action}.", "error")
        return back
    try:
        if action == "cancel":
            status = jobs.cancel(job_id)
        else:
            job = jobs.retry(job_id)
    except errors.JobError as exc:
        flash(f"Could not {action} run {run_id}: {exc}.", "error")
        return back
    if action == "retry":
        flash(
            f"Run {run_id} is queued again (job {job.id}); it resumes from its last state.",
            "success",
        )
    elif status == "cancelled":
        flash(f"Run {run_id} is cancelled.", "success")
    elif status == "running":
        flash(f"Cancel requested: run {run_id} stops at its next check.", "success")
    else:
        flash(f"Run {run_id} had already {status}; nothing to cancel.", "error")
    return back


@bp.post("/runs/<int:run_id>/cancel")
def cancel_run(run_id: int):
    return _act(run_id, "cancel")


@bp.post("/runs/<int:run_id>/retry")
def retry_run(run_id: int):
    return _act(run_id, "retry")
