"""Every job state transition, in this one module.

    queued -> running -> succeeded | failed | cancelled
    running -> queued            (its worker died; the attempt is counted)
    failed | cancelled -> queued (a user's retry)

Every transition is a compare-and-set UPDATE: it names the state it expects (and, for a
running job, the attempt that owns it), and does nothing if another process got there
first. So two workers, a reconciler and a user can act on the same job at once and the
database decides; a message that arrives twice runs the job once.

Submitting (`shared.submit`) commits the job's row before its message is sent (`enqueue`);
a message that is lost after the commit is resent by `shared.reconciler`, which is
idempotent and safe to run anywhere. Reads are in `shared.job_reads`, errors in `shared.errors`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from shared.contracts.specs import SpecError
from shared.db import retry_on_disconnect, session_scope
from shared.errors import Displaced, JobError, JobNotFound
from shared.job_reads import get_job
from shared.models import Job, JobKind, JobStatus, Run, utcnow
from shared.queue import new_task_id, send_job
from shared.settings import get_settings

log = logging.getLogger(__name__)

# Error texts are cut to this many characters: the tail of a traceback is what matters.
MAX_ERROR_CHARS = 8000


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return "..." + text[-MAX_ERROR_CHARS:]


# ----------------------------------------------------------------------------- enqueue


def enqueue(job_ids: list[int]) -> None:
    """Stamp each job's send time and task id, commit, then send its message."""
    for job_id in job_ids:
        task_id = new_task_id()
        with session_scope() as s:
            row = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                .values(enqueued_at=utcnow(), celery_task_id=task_id)
                .returning(Job.queue, Job.priority)
            ).first()
        if row is not None:  # cancelled meanwhile: nothing to send
            send_job(job_id, row.queue, task_id=task_id, priority=row.priority)


# ----------------------------------------------------------------------------- claim & run


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a job: the attempt number is the ownership token."""

    job_id: int
    attempt: int
    worker: str


def stale_before() -> datetime:
    """Heartbeats older than this are stale: their worker is presumed dead."""
    return utcnow() - timedelta(seconds=get_settings().stale_after_seconds)


def _owned(job_id: int, attempt: int):
    return and_(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.attempts == attempt)


@retry_on_disconnect
def claim(job_id: int, worker: str) -> Claim | None:
    """Take job `job_id` for `worker`: queued (or running with a dead heartbeat) -> running.

    Returns None, and runs nothing, when the job is finished, cancelled, running on a live
    worker (a redelivered or duplicate message), or out of attempts (it is then failed).
    """
    now = utcnow()
    owed = or_(
        Job.status == JobStatus.QUEUED,
        and_(
            Job.status == JobStatus.RUNNING,
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before()),
        ),
    )
    with session_scope() as s:
        row = s.execute(
            update(Job)
            .where(
                Job.id == job_id,
                owed,
                Job.cancel_requested.is_(False),
                Job.attempts < Job.max_attempts,
            )
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                worker=worker,
                heartbeat_at=now,
                started_at=func.coalesce(Job.started_at, now),
                finished_at=None,
            )
            .returning(Job.attempts, Job.kind, Job.run_id)
        ).first()
        if row is not None and row.kind == JobKind.TRAIN and row.run_id is not None:
            s.execute(
                update(Run)
                .where(Run.id == row.run_id)
                .values(status=JobStatus.RUNNING, started_at=func.coalesce(Run.started_at, now))
            )
    if row is not None:
        return Claim(job_id, row.attempts, worker)
    _settle_unclaimable(job_id)
    return None


def _settle_unclaimable(job_id: int) -> None:
    """A job we could not claim: end it if it is owed but can never run."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return
        expected = job.status
        if (
            job.status == JobStatus.RUNNING
            and job.heartbeat_at
            and job.heartbeat_at >= (stale_before())
        ):
            return  # alive elsewhere: the duplicate message is simply dropped
        if job.cancel_requested:
            end_job(s, job_id, expected, JobStatus.CANCELLED, None, job.attempts)
        elif job.attempts >= job.max_attempts:
            reason = f"gave up after {job.attempts} attempts; last: {job.error or 'worker lost'}"
            end_job(s, job_id, expected, JobStatus.FAILED, reason, job.attempts)


def end_job(
    s: Session,
    job_id: int,
    expected: JobStatus,
    status: JobStatus,
    error: str | None,
    attempt: int | None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Move job `job_id` from `expected` (and `attempt`, if given) to a final `status`."""
    now = utcnow()
    where = [Job.id == job_id, Job.status == expected]
    if attempt is not None:
        where.append(Job.attempts == attempt)
    values: dict[str, Any] = {"status": status, "finished_at": now, "error": _clip(error)}
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    if result is not None:
        values["result"] = result
    row = s.execute(update(Job).where(*where).values(**values).returning(Job.run_id, Job.kind))
    row = row.first()
    if row is None:
        return False
    if row.kind == JobKind.TRAIN and row.run_id is not None:
        s.execute(update(Run).where(Run.id == row.run_id).values(status=status, finished_at=now))
    return True


@dataclass(frozen=True)
class Beat:
    owned: bool  # False: another attempt or a user's action took the job; stop
    cancel_requested: bool


@retry_on_disconnect
def heartbeat(c: Claim, progress: float | None = None) -> Beat:
    """Record that attempt `c` is alive (and its progress); report a cancel request."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    with session_scope() as s:
        row = s.execute(
            update(Job)
            .where(_owned(c.job_id, c.attempt))
            .values(**values)
            .returning(Job.cancel_requested)
        ).first()
    if row is None:
        return Beat(owned=False, cancel_requested=cancel_requested(c.job_id))
    return Beat(owned=True, cancel_requested=bool(row.cancel_requested))


def fence(s: Session, c: Claim) -> None:
    """Refuse the writes of transaction `s` unless attempt `c` owns its job (`Displaced`).

    Called first in every transaction that writes a job's results: the ownership check and
    the writes commit together. On PostgreSQL the job's row is share-locked, so a claim by
    another attempt waits for this transaction to end (and any write that committed before
    the claim was made by the owner); SQLite's BEGIN IMMEDIATE serialises them anyway.
    A cancel request does not fence: a cancelled attempt still saves where it stopped.
    """
    owner = s.scalar(select(Job.id).where(_owned(c.job_id, c.attempt)).with_for_update(read=True))
    if owner is None:
        raise Displaced(
            f"job {c.job_id}: attempt {c.attempt} no longer owns it (given to another "
            "attempt, or ended); its write was refused"
        )


@retry_on_disconnect
def set_progress(c: Claim, progress: float) -> None:
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(_owned(c.job_id, c.attempt))
            .values(progress=max(0.0, min(1.0, progress)))
        )


@retry_on_disconnect
def still_owned(c: Claim) -> bool:
    """True while attempt `c` owns its job and nobody asked it to stop."""
    with session_scope() as s:
        return (
            s.scalar(select(Job.id).where(_owned(c.job_id, c.attempt), ~Job.cancel_requested))
            is not None
        )


@retry_on_disconnect
def set_result(c: Claim, result: dict[str, Any]) -> None:
    """Store what attempt `c` produced; the runner then marks the job succeeded."""
    with session_scope() as s:
        fence(s, c)
        s.execute(update(Job).where(_owned(c.job_id, c.attempt)).values(result=result))


@retry_on_disconnect
def cancel_requested(job_id: int) -> bool:
    with session_scope() as s:
        return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


@retry_on_disconnect
def succeed(c: Claim, result: dict[str, Any] | None = None) -> bool:
    with session_scope() as s:
        return end_job(s, c.job_id, JobStatus.RUNNING, JobStatus.SUCCEEDED, None, c.attempt, result)


@retry_on_disconnect
def fail(c: Claim, error: str) -> bool:
    """Attempt `c` failed for a reason retrying will not fix (an exception in the job)."""
    with session_scope() as s:
        return end_job(s, c.job_id, JobStatus.RUNNING, JobStatus.FAILED, error, c.attempt)


@retry_on_disconnect
def mark_cancelled(c: Claim) -> bool:
    with session_scope() as s:
        return end_job(s, c.job_id, JobStatus.RUNNING, JobStatus.CANCELLED, None, c.attempt)


@retry_on_disconnect
def mark_pruned(c: Claim) -> bool:
    """Attempt `c`, a sweep trial's run, was stopped by its pruner (state saved)."""
    with session_scope() as s:
        return end_job(s, c.job_id, JobStatus.RUNNING, JobStatus.PRUNED, None, c.attempt)


@retry_on_disconnect
def release(c: Claim, reason: str, *, count: bool = True) -> bool:
    """Attempt `c` died of something outside the job (killed, lost): queue it again, or
    fail it if this was its last attempt. Returns True if it was queued (and sent).

    `count=False` (the worker shut down and stopped it cleanly) gives the attempt back.
    """
    with session_scope() as s:
        job = s.get(Job, c.job_id)
        if job is None:
            return False
        if not count:
            s.execute(update(Job).where(_owned(c.job_id, c.attempt)).values(attempts=c.attempt - 1))
            c = Claim(c.job_id, c.attempt - 1, c.worker)
        elif job.attempts >= job.max_attempts:
            reason = f"gave up after {job.attempts} attempts; last: {reason}"
            end_job(s, c.job_id, JobStatus.RUNNING, JobStatus.FAILED, reason, c.attempt)
            return False
        requeued = requeue_where(s, [_owned(c.job_id, c.attempt)], reason)
    if requeued:
        enqueue(requeued)
    return bool(requeued)


def requeue_where(s: Session, where: list[Any], reason: str) -> list[int]:
    """Queue again the jobs matching `where` (and their runs); return their ids, to send."""
    rows = s.execute(
        update(Job)
        .where(*where)
        .values(status=JobStatus.QUEUED, worker=None, heartbeat_at=None, error=_clip(reason))
        .returning(Job.id, Job.run_id, Job.kind)
    ).all()
    runs = [r.run_id for r in rows if r.kind == JobKind.TRAIN and r.run_id is not None]
    if runs:
        s.execute(update(Run).where(Run.id.in_(runs)).values(status=JobStatus.QUEUED))
    return [r.id for r in rows]


# ----------------------------------------------------------------------------- user actions


def cancel(job_id: int) -> JobStatus:
    """Ask job `job_id` to stop. A queued job is cancelled at once; a running one stops at
    its next check (its runner then signals it). Returns the status after the request."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        if JobStatus(job.status).finished:
            return JobStatus(job.status)
        s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        if end_job(s, job_id, JobStatus.QUEUED, JobStatus.CANCELLED, None, None):
            return JobStatus.CANCELLED
        return JobStatus.RUNNING


def retry(job_id: int) -> Job:
    """Queue a failed or cancelled job again with a fresh set of attempts; enqueue it.

    A training job resumes from its last saved state.
    """
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise JobError(f"job {job_id} is {job.status}; only failed or cancelled jobs retry")
        done = requeue_where(
            s,
            [Job.id == job_id, Job.status == job.status],
            reason=f"retried after it {job.status}: {job.error or ''}".strip(": "),
        )
        if not done:
            raise JobError(f"job {job_id} changed state meanwhile; try again")
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(attempts=0, cancel_requested=False, finished_at=None, progress=0.0)
        )
    enqueue([job_id])
    return get_job(job_id)


def set_priority(job_id: int, priority: int) -> Job:
    """Change a queued job's priority (higher runs first) and send its message again with
    it; the claim drops the older message. Only queued jobs can be reordered."""
    if not -1000 <= priority <= 1000:
        raise SpecError("priority", f"must be between -1000 and 1000, got {priority}")
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        changed = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(priority=priority)
        ).rowcount
        if not changed:
            raise JobError(f"job {job_id} is {job.status}; only queued jobs can be reordered")
    enqueue([job_id])
    return get_job(job_id)
