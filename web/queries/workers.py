"""Workers and queues: who is online, what each queue holds, and when a queued job should start."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.models import Job, JobKind, JobStatus, Worker, WorkerState, utcnow
from shared.workers import display_state
from web.queries.common import iso
from web.queries.jobs import job_row

# Finished jobs each estimate is drawn from (newest first): recent enough to reflect the
# machines now, many enough for a stable median.
HISTORY = 50


def _seconds(started: datetime, finished: datetime) -> float:
    return (finished - started).total_seconds()


class Estimates:
    """How long a job should take, from the runtimes of finished jobs like it.

    A training job: the median of finished runs with the same preset and step count; failing
    that, the median seconds per step of this preset's runs (else any run's) times its steps.
    Other kinds: the median runtime of their kind.
    """

    def __init__(self, s: Session) -> None:
        self.by_kind: dict[str, float] = {}
        self.train_same: dict[tuple[str | None, int | None], list[float]] = defaultdict(list)
        self.per_step: dict[str | None, list[float]] = defaultdict(list)  # seconds per step
        self.any_per_step: list[float] = []
        for kind in JobKind:
            rows = s.execute(
                select(Job.started_at, Job.finished_at, Job.spec)
                .where(
                    Job.kind == kind,
                    Job.status == JobStatus.SUCCEEDED,
                    Job.started_at.is_not(None),
                    Job.finished_at.is_not(None),
                )
                .order_by(Job.id.desc())
                .limit(HISTORY)
            ).all()
            if rows:
                self.by_kind[str(kind)] = statistics.median(_seconds(a, b) for a, b, _ in rows)
            if kind != JobKind.TRAIN:
                continue
            for started, finished, spec in rows:
                preset, steps = _train_key(spec)
                self.train_same[(preset, steps)].append(_seconds(started, finished))
                if steps:
                    self.per_step[preset].append(_seconds(started, finished) / steps)
                    self.any_per_step.append(_seconds(started, finished) / steps)

    def of(self, job: Job) -> float | None:
        """Seconds `job` should run, or None when nothing like it has finished."""
        if job.kind != JobKind.TRAIN:
            return self.by_kind.get(str(job.kind))
        preset, steps = _train_key(job.spec)
        if same := self.train_same.get((preset, steps)):
            return statistics.median(same)
        rates = self.per_step.get(preset) or self.any_per_step
        if rates and steps:
            return statistics.median(rates) * steps
        return None


def _train_key(spec: dict[str, Any] | None) -> tuple[str | None, int | None]:
    """(preset, max_steps) of a training job's spec: what makes two runs take as long."""
    spec = spec or {}
    steps = spec.get("max_steps")
    return spec.get("preset"), steps if isinstance(steps, int) else None


def gpu_note(queue: str, serving: list[Worker]) -> str | None:
    """What serves the gpu queue when none of its online workers has a GPU (`up` on a
    laptop takes both queues): say so, rather than let "1 worker online" imply a GPU."""
    if queue != "gpu" or not serving:
        return None
    if any((w.device or "").startswith("cuda") for w in serving):
        return None
    who = "its worker has" if len(serving) == 1 else f"its {len(serving)} workers have"
    return (
        f"No GPU behind this queue: {who} none, so a job here runs on the CPU "
        "(one that asks for device cuda fails)."
    )


def workers_and_queues(s: Session) -> dict[str, Any]:
    """Workers with their state, and each queue's running and queued jobs.

    A queued job's ETA is when a worker of its queue should be free to start it: the
    remaining time of the running jobs plus the jobs ahead of it, each estimated from the
    runtimes of finished jobs like it (`Estimates`), shared over the queue's online workers.
    """
    now = utcnow()
    workers = s.scalars(select(Worker).order_by(Worker.name)).all()
    estimates = Estimates(s)
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
        serving = [
            w for w in workers if name in (w.queues or []) and states[w.name] == WorkerState.ONLINE
        ]
        online = len(serving)
        running = [j for j in owed if j.queue == name and j.status == JobStatus.RUNNING]
        queued = [j for j in owed if j.queue == name and j.status == JobStatus.QUEUED]
        busy = 0.0
        for j in running:
            est = estimates.of(j)
            if est is not None and j.started_at is not None:
                busy += max(0.0, est - (now - j.started_at).total_seconds())
        rows = []
        ahead: float | None = 0.0  # None once a job ahead has no estimate
        for pos, j in enumerate(queued, start=1):
            eta = round((busy + ahead) / online, 1) if online and ahead is not None else None
            rows.append({**job_row(j), "position": pos, "eta_s": eta})
            est = estimates.of(j)
            ahead = None if ahead is None or est is None else ahead + est
        queues.append(
            {
                "name": name,
                "workers_online": online,
                "note": gpu_note(name, serving),
                "running": len(running),
                "queued": len(queued),
                "jobs": rows,
            }
        )
    return {"workers": worker_rows, "queues": queues, "runtime_estimates_s": estimates.by_kind}
