"""Submitting a speed-quality frontier: one ordinary generation job per checkpoint.

A `FrontierSpec` names checkpoints and a grid; every checkpoint gets a generation job over
that grid (an AR checkpoint over the temperatures only: it has no steps or strategies),
each carrying the frontier's name in its spec, so the frontier's points are simply the
sample sets of those jobs. The judge and every checkpoint are checked before anything is
written, and the jobs are inserted in one transaction: a bad one stores nothing.
"""

from __future__ import annotations

from shared import submit
from shared.contracts.frontier import FrontierSpec
from shared.models import Job, utcnow


def frontier_name(spec: FrontierSpec) -> str:
    return spec.name or f"frontier-{utcnow():%Y%m%d-%H%M%S}"


def submit_frontier(
    spec: FrontierSpec, *, queue: str | None = None, priority: int = 0
) -> tuple[str, list[Job]]:
    """Insert the frontier's generation jobs (one per checkpoint), commit, enqueue them.

    Returns (the frontier's name, its jobs). `SpecError` naming `judge` or `checkpoints.N`
    when one cannot be used; nothing is then stored.
    """
    name = frontier_name(spec)
    judge = submit.judge_source(spec.judge) if spec.judge is not None else None
    objectives = [
        submit.checkpoint_objective(ref, field=f"checkpoints.{i}")
        for i, ref in enumerate(spec.checkpoints)
    ]
    specs = [
        spec.generate_spec(ref, name, causal=objective == "ar").model_copy(update={"judge": judge})
        for ref, objective in zip(spec.checkpoints, objectives, strict=True)
    ]
    return name, submit.submit_generate_all(specs, queue=queue, priority=priority)
