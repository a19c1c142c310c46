"""Writes a running job's results to the database, idempotently.

Rows that a resumed or retried attempt may write again are keyed by unique constraints
(loss points by run and step, eval points by run, step and ratio, checkpoints by run and
step, sample sets by job and combination): loss points skip what exists, the others
overwrite it, so no attempt ever duplicates a row. That also makes each write safe to
repeat, so each waits out a database restart (`retry_on_disconnect`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import retry_on_disconnect, session_scope
from shared.models import Checkpoint, EvalPoint, LossPoint, Run, Sample, SampleSet


def _insert(session: Session, model: type):
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


@retry_on_disconnect
def add_loss_points(
    run_id: int, points: list[dict[str, Any]], progress: dict[str, Any]
) -> list[int]:
    """Insert loss points and the run's progress; return the steps that were already stored
    (and so skipped), in order: a resumed attempt's replay, or a write repeated after a lost
    commit. The caller logs them, which is how a test sees a step written twice."""
    skipped: list[int] = []
    with session_scope() as s:
        if points:
            rows = [{"run_id": run_id, **p} for p in points]
            stmt = _insert(s, LossPoint).values(rows)
            stmt = stmt.on_conflict_do_nothing(index_elements=["run_id", "step"])
            stored = set(s.scalars(stmt.returning(LossPoint.step)))
            skipped = [p["step"] for p in points if p["step"] not in stored]
        if progress:
            s.execute(update(Run).where(Run.id == run_id).values(**progress))
    return skipped


@retry_on_disconnect
def put_eval_points(run_id: int, step: int, points: list[dict[str, Any]]) -> None:
    """Insert or overwrite the per-ratio losses of `run_id` at `step` (an AR run has none)."""
    if not points:
        return
    with session_scope() as s:
        rows = [{"run_id": run_id, "step": step, **p} for p in points]
        stmt = _insert(s, EvalPoint).values(rows)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "step", "ratio"],
                set_={"loss": stmt.excluded.loss, "accuracy": stmt.excluded.accuracy},
            )
        )


@retry_on_disconnect
def merge_run_summary(run_id: int, values: dict[str, Any]) -> None:
    with session_scope() as s:
        run = s.get(Run, run_id)
        if run is not None:
            run.summary = {**(run.summary or {}), **values}


@retry_on_disconnect
def put_checkpoint(run_id: int, step: int, url: str, metrics: dict[str, Any]) -> int:
    """Record (or refresh) the checkpoint of `run_id` at `step`; return its id."""
    with session_scope() as s:
        stmt = _insert(s, Checkpoint).values(run_id=run_id, step=step, url=url, metrics=metrics)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "step"],
                set_={"url": stmt.excluded.url, "metrics": stmt.excluded.metrics},
            )
        )
        return s.scalars(
            select(Checkpoint.id).where(Checkpoint.run_id == run_id, Checkpoint.step == step)
        ).one()


@retry_on_disconnect
def merge_checkpoint_metrics(checkpoint_id: int, values: dict[str, Any]) -> None:
    with session_scope() as s:
        ckpt = s.get(Checkpoint, checkpoint_id)
        if ckpt is not None:
            ckpt.metrics = {**(ckpt.metrics or {}), **values}


@retry_on_disconnect
def done_combinations(job_id: int) -> set[int]:
    with session_scope() as s:
        return set(s.scalars(select(SampleSet.combination).where(SampleSet.job_id == job_id)))


@retry_on_disconnect
def add_sample_set(
    job_id: int,
    checkpoint_id: int,
    combination: int,
    settings: dict[str, Any],
    metrics: dict[str, Any],
    samples: list[dict[str, Any]],
) -> int:
    """Store one combination's sample set and its samples in one transaction."""
    with session_scope() as s:
        sample_set = SampleSet(
            job_id=job_id,
            checkpoint_id=checkpoint_id,
            combination=combination,
            settings=settings,
            metrics=metrics,
        )
        s.add(sample_set)
        s.flush()
        s.add_all(
            Sample(sample_set_id=sample_set.id, position=i, **sample)
            for i, sample in enumerate(samples)
        )
        return sample_set.id
