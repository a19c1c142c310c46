"""Workers and queues: who is online, what each queue holds, and reordering queued jobs.

The page renders `web.queries.workers` and its script re-renders it from
/api/workers every few seconds. Changing a queued job's priority posts a small form
here; `shared.jobs.set_priority` does the work (and refuses jobs that are not queued).
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from shared import errors, jobs
from shared.contracts.limits import MAX_ID
from shared.contracts.specs import SpecError
from shared.db import read_scope
from shared.settings import get_settings
from web.pages import bp
from web.queries.workers import workers_and_queues

POLL_MS = 5000


@bp.get("/workers")
def workers():
    with read_scope() as s:
        data = workers_and_queues(s)
    return render_template(
        "workers.html",
        data=data,
        stale_after_s=get_settings().stale_after_seconds,
        poll_ms=POLL_MS,
    )


@bp.post("/jobs/<int:job_id>/priority")
def set_priority(job_id: int):
    back = redirect(url_for("pages.workers"))
    raw = request.form.get("priority", "").strip()
    try:
        priority = int(raw)
    except ValueError:
        flash(f"Priority must be a whole number, got {raw!r}.", "error")
        return back
    try:
        if job_id > MAX_ID:  # past any id; the database driver would overflow on it
            raise errors.JobNotFound(f"no job with id {job_id}")
        job = jobs.set_priority(job_id, priority)
    except (errors.JobError, SpecError) as exc:
        flash(f"Job {job_id}: {exc}", "error")
        return back
    flash(f"Job {job.id} now has priority {job.priority}.", "success")
    return back
