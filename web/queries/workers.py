"""Workers and queues: who is online, what each queue holds, and when a queued job should start."""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.models import Job, JobKind, JobStatus, Worker, WorkerState, utcnow
from shared.workers import display_state
from web.queries.common import iso
from web.queries.jobs import job_row


def _runtime_estimates(s: Session) -> dict[str, float]:
    """Median seconds of the last 50 finished jobs of each kind."""
    out: dict[str, float] = {}
    for kind in JobKind:
        rows = s.execute(
            select(Job.started_at, Job.finished_at)
            .where(
                Job.kind == kind,
                Job.status == JobStatus.SUCCEEDED,
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
            )
            .order_by(Job.id.desc())
            .limit(50)
        ).all()
        durations = [(f - st).total_seconds() for st, f in rows]
        if durations:
            out[str(kind)] = statistics.median(durations)
    return out


def workers_and_queues(s: Session) -> dict[str, Any]:
    """Workers with their state, and each queue's running and queued jobs.

    A queued job's ETA is when a worker of its queue should be free to start it: the
    remaining time of the running jobs plus the jobs ahead of it, each estimated by the
    median runtime of its kind, shared over the queue's online workers.
    """
    now = utcnow()
    workers = s.scalars(select(Worker).order_by(Worker.name)).all()
    estimates = _runtime_estimates(s)
    # "lost" (no heartbeat), "drained" and "draining" workers take no jobs: not online.
    states = {w.name: display_state(w, now) for w in workers}
    worker_rows = []
    for w in workers:
        age = (now - w.last_heartbeat).total_seconds()
        worker_rows.append(
            {
                "name": w.name,
                "host": w.host,
                "queues": list(w.queues or []),
                "device": w.device,
                "state": states[w.name],
                "last_heartbeat": iso(w.last_heartbeat),
                "heartbeat_age_s": round(age, 1),
                "current_job_id": w.current_job_id,
            }
        )
    owed = s.scalars(
        select(Job)
        .where(or_(Job.status == JobStatus.QUEUED, Job.status == JobStatus.RUNNING))
        .order_by(Job.priority.desc(), Job.id)
    ).all()
    queues = []
    for name in sorted({j.queue for j in owed} | {"cpu", "gpu"}):
        online = sum(
            1 for w in workers if name in (w.queues or []) and states[w.name] == WorkerState.ONLINE
        )
        running = [j for j in owed if j.queue == name and j.status == JobStatus.RUNNING]
        queued = [j for j in owed if j.queue == name and j.status == JobStatus.QUEUED]
        busy = 0.0
        for j in running:
            est = estimates.get(str(j.kind))
            if est is not None and j.started_at is not None:
                busy += max(0.0, est - (now - j.started_at).total_seconds())
        rows = []
        for pos, j in enumerate(queued, start=1):
            eta = None
            if online and all(str(x.kind) in estimates for x in queued[: pos - 1]):
                ahead = sum(estimates[str(x.kind)] for x in queued[: pos - 1])
                eta = round((busy + ahead) / online, 1)
            rows.append({**job_row(j), "position": pos, "eta_s": eta})
        queues.append(
            {
                "name": name,
                "workers_online": online,
                "running": len(running),
                "queued": len(queued),
                "jobs": rows,
            }
        )
    return {"workers": worker_rows, "queues": queues, "runtime_estimates_s": estimates}
