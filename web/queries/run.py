"""One run: its row, jobs, checkpoints, sample sets and full settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Checkpoint, Job, JobKind, Run, Sweep, SweepTrial
from web.queries.common import flat, iso
from web.queries.jobs import job_row
from web.queries.runs import get_run, run_row, train_jobs
from web.queries.samples import list_sample_sets


def run_detail(s: Session, run_id: int) -> dict[str, Any]:
    run = get_run(s, run_id)
    jobs = s.scalars(select(Job).where(Job.run_id == run_id).order_by(Job.id)).all()
    train = [j for j in jobs if j.kind == JobKind.TRAIN]
    return {
        **run_row(run, train[-1] if train else None),
        "spec": run.spec,
        "summary": run.summary or {},
        "checkpoints": [checkpoint_row(c) for c in run.checkpoints],
        "jobs": [job_row(j) for j in jobs],
        "sample_sets": list_sample_sets(s, run_id=run_id),
        "sweep": _sweep_of(s, run),
    }


def _sweep_of(s: Session, run: Run) -> dict[str, Any] | None:
    """The sweep a trial's run belongs to: {id, name, trial}, or None."""
    if run.sweep_trial_id is None:
        return None
    row = s.execute(
        select(Sweep.id, Sweep.name, SweepTrial.number)
        .join(SweepTrial, SweepTrial.sweep_id == Sweep.id)
        .where(SweepTrial.id == run.sweep_trial_id)
    ).first()
    return None if row is None else {"id": row.id, "name": row.name, "trial": row.number}


def flat_settings(spec: dict[str, Any] | None) -> dict[str, Any]:
    """A spec as dotted field -> value, in the spec's own order (the run page's table)."""
    return flat(spec)


def train_job_id(s: Session, run_id: int) -> int | None:
    """The id of the run's newest training job (None if it has none); `NotFound` if no run."""
    get_run(s, run_id)
    job = train_jobs(s, [run_id]).get(run_id)
    return job.id if job is not None else None


def checkpoint_row(c: Checkpoint) -> dict[str, Any]:
    return {
        "id": c.id,
        "run_id": c.run_id,
        "step": c.step,
        "url": c.url,
        "metrics": c.metrics or {},
        "created_at": iso(c.created_at),
    }


def list_checkpoints(s: Session, run_id: int | None = None, limit: int = 500) -> list[dict]:
    q = (
        select(Checkpoint, Run.name, Run.spec["objective"].as_string())
        .join(Run, Run.id == Checkpoint.run_id)
        .order_by(Checkpoint.id.desc())
        .limit(limit)
    )
    if run_id is not None:
        q = q.where(Checkpoint.run_id == run_id)
    return [
        {**checkpoint_row(c), "run_name": name, "objective": objective or "diffusion"}
        for c, name, objective in s.execute(q)
    ]
