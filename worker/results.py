"""Writes a running job's results to the database, idempotently and fenced.

Rows that a resumed or retried attempt may write again are keyed by unique constraints
(loss points by run and step, eval points by run, step and ratio, checkpoints by run and
step, sample sets by job and combination): loss points skip what exists, the others
overwrite it, so no attempt ever duplicates a row. That also makes each write safe to
repeat, so each waits out a database restart (`retry_on_disconnect`).

Every write takes the attempt's claim and checks, in its own transaction, that the attempt
still owns the job (`shared.jobs.fence`): an attempt that was declared lost while it kept
running (cut off from the database, then back) has its writes refused (`Displaced`) and
stops, so the attempt that replaced it is the only one writing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import retry_on_disconnect, session_scope
from shared.jobs import Claim, fence
from shared.models import Checkpoint, EvalPoint, LossPoint, Run, Sample, SampleSet

# The run summary's key naming its published training state (`worker.bodies.run_state`).
PUBLISHED_STATE = "published_state"


def _insert(session: Session, model: type):
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


@retry_on_disconnect
def add_loss_points(
    c: Claim, run_id: int, points: list[dict[str, Any]], progress: dict[str, Any]
) -> list[int]:
    """Insert loss points and the run's progress; return the steps that were already stored
    (and so skipped), in order: a resumed attempt's replay, or a write repeated after a lost
    commit. The caller logs them, which is how a test sees a step written twice."""
    skipped: list[int] = []
    with session_scope() as s:
        fence(s, c)
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
def put_eval_points(c: Claim, run_id: int, step: int, points: list[dict[str, Any]]) -> None:
    """Insert or overwrite the per-ratio losses of `run_id` at `step` (an AR run has none)."""
    if not points:
        return
    with session_scope() as s:
        fence(s, c)
        rows = [{"run_id": run_id, "step": step, **p} for p in points]
        stmt = _insert(s, EvalPoint).values(rows)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "step", "ratio"],
                set_={"loss": stmt.excluded.loss, "accuracy": stmt.excluded.accuracy},
            )
        )


@retry_on_disconnect
def merge_run_summary(c: Claim, run_id: int, values: dict[str, Any]) -> None:
    with session_scope() as s:
        fence(s, c)
        run = s.get(Run, run_id)
        if run is not None:
            run.summary = {**(run.summary or {}), **values}


@retry_on_disconnect
def put_checkpoint(c: Claim, run_id: int, step: int, url: str, metrics: dict[str, Any]) -> int:
    """Record (or refresh) the checkpoint of `run_id` at `step`; return its id."""
    with session_scope() as s:
        fence(s, c)
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
def merge_checkpoint_metrics(c: Claim, checkpoint_id: int, values: dict[str, Any]) -> None:
    with session_scope() as s:
        fence(s, c)
        ckpt = s.get(Checkpoint, checkpoint_id)
        if ckpt is not None:
            ckpt.metrics = {**(ckpt.metrics or {}), **values}


@retry_on_disconnect
def done_combinations(job_id: int) -> set[int]:
    with session_scope() as s:
        return set(s.scalars(select(SampleSet.combination).where(SampleSet.job_id == job_id)))


@retry_on_disconnect
def add_sample_set(
    c: Claim,
    checkpoint_id: int,
    combination: int,
    settings: dict[str, Any],
    metrics: dict[str, Any],
    samples: list[dict[str, Any]],
) -> int:
    """Store one combination's sample set (of attempt `c`'s job) and its samples in one
    transaction."""
    with session_scope() as s:
        fence(s, c)
        sample_set = SampleSet(
            job_id=c.job_id,
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


@retry_on_disconnect
def set_published_state(c: Claim, run_id: int, url: str, step: int) -> None:
    """Make `url` (a state at `step`, copied to the artifact store by attempt `c`) the one
    run `run_id` resumes from."""
    with session_scope() as s:
        fence(s, c)
        run = s.get(Run, run_id)
        if run is not None:
            state = {"url": url, "step": step, "attempt": c.attempt}
            run.summary = {**(run.summary or {}), PUBLISHED_STATE: state}


@retry_on_disconnect
def published_state(run_id: int) -> str | None:
    """The URL of the state run `run_id` resumes from, or None (start over)."""
    with session_scope() as s:
        summary = s.scalar(select(Run.summary).where(Run.id == run_id)) or {}
    state = summary.get(PUBLISHED_STATE)
    return state["url"] if state else None
