"""Submitting a speed-quality frontier: one ordinary generation job per checkpoint.

A `FrontierSpec` names checkpoints and a grid; every checkpoint gets a generation job over
that grid (an AR checkpoint over the temperatures only: it has no steps or strategies),
each carrying the frontier's name in its spec, so the frontier's points are simply the
sample sets of those jobs. Every checkpoint and the judge are checked before anything is
written, and all the jobs are inserted in one transaction: a bad one stores nothing.
"""

from __future__ import annotations

from shared import jobs
from shared.contracts.specs import FrontierSpec
from shared.db import session_scope
from shared.models import Job, JobKind, utcnow


def frontier_name(spec: FrontierSpec) -> str:
    return spec.name or f"frontier-{utcnow():%Y%m%d-%H%M%S}"


def submit_frontier(
    spec: FrontierSpec, *, queue: str | None = None, priority: int = 0
) -> tuple[str, list[Job]]:
    """Insert the frontier's generation jobs (one per checkpoint), commit, enqueue them.

    Returns (the frontier's name, its jobs). `SpecError` naming `checkpoints.N` or `judge`
    when one cannot be used; nothing is then stored.
    """
    name = frontier_name(spec)
    judge = jobs.judge_source(spec.judge) if spec.judge is not None else None
    queue = jobs._queue(spec, queue)
    with session_scope() as s:
        planned = []
        for i, ref in enumerate(spec.checkpoints):
            ckpt = jobs.resolve_checkpoint(s, ref, field=f"checkpoints.{i}")
            causal = (ckpt.run.spec or {}).get("objective") == "ar"
            gen = spec.generate_spec(ckpt.id, name, causal)
            payload = gen.model_dump(mode="json")
            payload["judge"] = judge
            planned.append(jobs._new_job(JobKind.GENERATE, payload, ckpt.run_id, queue, priority))
        s.add_all(planned)
    jobs._enqueue([j.id for j in planned])
    return name, planned
