"""Reading jobs back: rows for the CLI, the workers and tests, and the query the dashboard
shares (`web.queries.jobs` turns its rows into plain dicts inside a read-only transaction)."""

from __future__ import annotations

from sqlalchemy import Select, select

from shared.db import retry_on_disconnect, session_scope
from shared.errors import JobNotFound
from shared.models import Job, JobStatus, Run


@retry_on_disconnect
def get_job(job_id: int) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job


def resumed_from_step(run_id: int) -> int | None:
    """The step the run's latest training attempt started from (0: from scratch), as its
    job recorded it in the run's summary; None before any attempt started."""
    with session_scope() as s:
        run = s.get(Run, run_id)
        return None if run is None else (run.summary or {}).get("resumed_from_step")


def newest_jobs(limit: int, status: str | None = None, kind: str | None = None) -> Select:
    """Jobs newest first, optionally of one status and one kind."""
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        q = q.where(Job.status == status)
    if kind:
        q = q.where(Job.kind == kind)
    return q


def list_jobs(limit: int = 50, status: JobStatus | None = None) -> list[Job]:
    with session_scope() as s:
        return list(s.scalars(newest_jobs(limit, status)))
