"""Job rows, as the API, the run page and the workers page show them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.errors import JobNotFound
from shared.job_reads import newest_jobs
from shared.models import Job, JobKind, JobStatus
from web.errors import QueryError
from web.queries.common import iso

JOBS_LISTED = 100  # newest jobs listed by default
MAX_JOBS_LISTED = 1000


def job_row(j: Job) -> dict[str, Any]:
    return {
        "id": j.id,
        "kind": str(j.kind),
        "status": str(j.status),
        "run_id": j.run_id,
        "queue": j.queue,
        "priority": j.priority,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "progress": j.progress,
        "worker": j.worker,
        "cancel_requested": j.cancel_requested,
        "error": j.error,
        "result": j.result,
        "created_at": iso(j.created_at),
        "started_at": iso(j.started_at),
        "finished_at": iso(j.finished_at),
        "heartbeat_at": iso(j.heartbeat_at),
    }


def list_jobs(
    s: Session, *, status: str | None = None, kind: str | None = None, limit: int = JOBS_LISTED
) -> list[dict[str, Any]]:
    if status is not None and status not in {x.value for x in JobStatus}:
        raise QueryError("status", f"unknown status {status!r}")
    if kind is not None and kind not in {x.value for x in JobKind}:
        raise QueryError("kind", f"unknown kind {kind!r}")
    return [job_row(j) for j in s.scalars(newest_jobs(limit, status, kind))]


def get_job_row(s: Session, job_id: int, *, with_spec: bool = False) -> dict[str, Any]:
    job = s.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    return {**job_row(job), "spec": job.spec} if with_spec else job_row(job)
