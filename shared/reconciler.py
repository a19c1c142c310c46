"""Make the queue match what the database says is owed. Idempotent; run it anywhere.

Every worker runs it on a timer (`worker.maintenance`), and `text-diffusion jobs
reconcile` by hand. Two duties: running jobs whose worker died (a stale heartbeat) are
queued again, or failed when out of attempts; queued jobs whose message the broker lost
are sent again. The transitions themselves are `shared.jobs`'s compare-and-set updates, so
several reconcilers at once, or a reconciler racing a worker, change nothing twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, true

from shared.db import session_scope
from shared.jobs import end_job, enqueue, requeue_where, stale_before
from shared.models import Job, JobStatus, utcnow
from shared.queue import BrokerView, broker_view
from shared.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciled:
    requeued: list[int]  # running with a stale heartbeat -> queued
    failed: list[int]  # ... out of attempts -> failed
    resent: list[int]  # queued, message sent again


def reconcile(resend_after_s: float | None = None, *, requeue_stale: bool = True) -> Reconciled:
    """Make the queue match what the database says is owed. Idempotent; run it anywhere.

    Running jobs whose heartbeat is older than STALE_AFTER_SECONDS lost their worker: they
    are queued again (failed when out of attempts). Queued jobs whose message the broker
    lost are sent again (`_lost_messages`); a message still waiting in its queue is never
    sent twice, however long it waits. The claim drops any duplicate a race makes.

    `requeue_stale=False` leaves running jobs alone: the caller has not watched the
    database long enough to tell a dead worker from one whose heartbeats an outage held
    up (`worker.maintenance.Watch`).
    """
    requeued, failed = _requeue_lost() if requeue_stale else ([], [])
    try:
        resent = _lost_messages(requeued, resend_after_s)
    except Exception:  # the broker is away: sending would fail too; the next pass retries
        log.warning("reconcile: could not read the broker's messages", exc_info=True)
        resent = []
    enqueue(requeued + resent)
    if requeued or failed or resent:
        log.info("reconcile: requeued %s, failed %s, resent %s", requeued, failed, resent)
    return Reconciled(requeued, failed, resent)


def _requeue_lost() -> tuple[list[int], list[int]]:
    """Running jobs with a stale heartbeat: queue them again, or fail those out of attempts.
    Returns (queued again, failed); the caller sends the queued ones."""
    stale = and_(
        Job.status == JobStatus.RUNNING,
        or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before()),
    )
    with session_scope() as s:
        dead = s.execute(select(Job.id, Job.attempts, Job.max_attempts).where(stale)).all()
        failed = [
            d.id
            for d in dead
            if d.attempts >= d.max_attempts
            and end_job(
                s,
                d.id,
                JobStatus.RUNNING,
                JobStatus.FAILED,
                f"gave up after {d.attempts} attempts; last: worker lost (no heartbeat)",
                d.attempts,
            )
        ]
        requeued = requeue_where(
            s,
            [stale, Job.attempts < Job.max_attempts],
            "worker lost (no heartbeat); queued again",
        )
    return requeued, failed


# Before resending, the broker is read again this much later: a message can be between the
# database and the broker (stamped, not yet sent) or between a queue and a worker's
# unacknowledged set for a moment, and must not be taken for lost.
RECHECK_SECONDS = 1.0


def _queued_messages(exclude: list[int]) -> dict[int, tuple[str | None, datetime | None]]:
    """Queued jobs (but `exclude`) -> (task id, time sent) of their last message."""
    with session_scope() as s:
        rows = s.execute(
            select(Job.id, Job.celery_task_id, Job.enqueued_at)
            .where(Job.status == JobStatus.QUEUED, Job.id.not_in(exclude) if exclude else true())
            .order_by(Job.priority.desc(), Job.id)
        )
        return {r.id: (r.celery_task_id, r.enqueued_at) for r in rows}


def _lost(
    owed: dict[int, tuple[str | None, datetime | None]], view: BrokerView, resend_after_s: float
) -> list[int]:
    """The jobs of `owed` whose message the broker no longer has for them.

    Waiting in a queue: not lost, however old. Received by a worker that has not claimed
    the job within `resend_after_s`: lost with that worker (Redis would hand it back only
    after the visibility timeout). In neither, or never sent: lost now.
    """
    received_before = utcnow() - timedelta(seconds=resend_after_s)
    lost = []
    for job_id, (task_id, sent_at) in owed.items():
        if task_id is None or sent_at is None:
            lost.append(job_id)
        elif task_id in view.waiting:
            continue
        elif task_id not in view.received or sent_at <= received_before:
            lost.append(job_id)
    return lost


def _lost_messages(exclude: list[int], resend_after_s: float | None) -> list[int]:
    """Queued jobs (but `exclude`) whose message the broker lost, seen twice
    RECHECK_SECONDS apart; `resend_after_s` defaults to REQUEUE_AFTER_SECONDS."""
    if resend_after_s is None:
        resend_after_s = get_settings().requeue_after_seconds
    owed = _queued_messages(exclude)
    if not owed:
        return []
    lost = _lost(owed, broker_view(), resend_after_s)
    if not lost:
        return []
    time.sleep(RECHECK_SECONDS)
    owed_now = _queued_messages(exclude)
    again = _lost(owed_now, broker_view(), resend_after_s)
    # Lost both times, and the same message both times (not sent anew meanwhile).
    return [j for j in again if j in lost and owed_now[j][0] == owed[j][0]]
