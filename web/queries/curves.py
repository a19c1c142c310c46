"""A run's curves: evaluation loss and accuracy per mask ratio, the bound, the training loss.

Long series are downsampled here, in SQL where it matters, never in the browser: a chart
never receives more than `MAX_POINTS` points per curve, whatever the run's length.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.contracts.bound import quadrature_weights
from shared.models import EvalPoint, LossPoint
from web.queries.runs import get_run

MAX_POINTS = 300  # per curve sent to a chart
MIN_POINTS_ASKED = 2  # a client may ask for as few as first and last
MAX_POINTS_ASKED = 5000  # and at most this many


def _pick(values: list[int], n: int) -> list[int]:
    """At most n of `values` (sorted), evenly spaced, first and last always kept."""
    if len(values) <= n:
        return values
    idx = {round(i * (len(values) - 1) / (n - 1)) for i in range(n)}
    return [values[i] for i in sorted(idx)]


def run_curves(
    s: Session, run_id: int, max_points: int = MAX_POINTS, *, with_train: bool = True
) -> dict[str, Any]:
    """Per-mask-ratio evaluation curves, the bound per step, and the training loss.

    eval: steps (<= max_points, evenly picked), and per ratio the loss and accuracy at
    those steps (None where missing); bound: nats per token at each step whose grid is
    complete. train: the loss averaged over <= max_points buckets of steps (left out,
    and not computed, with `with_train=False`: the compare page draws no training loss).
    """
    get_run(s, run_id)
    steps = list(
        s.scalars(
            select(EvalPoint.step).where(EvalPoint.run_id == run_id).distinct().order_by("step")
        )
    )
    picked = _pick(steps, max_points)
    # Core rows, not ORM ones: these are thousands of plain tuples per run. All of the
    # run's rows by its index prefix, filtered here: cheaper than binding hundreds of
    # picked steps into an IN list.
    rows = s.connection().execute(
        select(EvalPoint.step, EvalPoint.ratio, EvalPoint.loss, EvalPoint.accuracy).where(
            EvalPoint.run_id == run_id
        )
    )
    if len(picked) < len(steps):
        keep = set(picked)
        rows = [r for r in rows if r[0] in keep]
    else:
        rows = rows.all()
    steps = picked
    # Up to max_points x ratios rows per run, and the compare page asks for 8 runs: plain
    # tuples and one set of quadrature weights keep this loop to a few ms per run.
    ratios = sorted({ratio for _, ratio, _, _ in rows})
    at = {s_: i for i, s_ in enumerate(steps)}
    loss: dict[float, list[float | None]] = {r: [None] * len(steps) for r in ratios}
    acc: dict[float, list[float | None]] = {r: [None] * len(steps) for r in ratios}
    for step, ratio, value, accuracy in rows:
        loss[ratio][at[step]] = value
        acc[ratio][at[step]] = accuracy
    weights = quadrature_weights(ratios) if ratios else []
    columns = [loss[r] for r in ratios]
    bound: list[float | None] = []
    for values in zip(*columns, strict=True):
        complete = None not in values and all(map(math.isfinite, values))
        # shared.contracts.bound.elbo_bound's nats per token, with the weights computed once
        bound.append(sum(w * v for w, v in zip(weights, values, strict=True)) if complete else None)
    return {
        "ratios": ratios,
        "eval": {
            "steps": steps,
            "loss": {f"{r:g}": loss[r] for r in ratios},
            "accuracy": {f"{r:g}": acc[r] for r in ratios},
            "bound": bound,
            **_x_axes(s, run_id, steps),
        },
        **({"train": _train_curve(s, run_id, max_points)} if with_train else {}),
    }


def _x_axes(s: Session, run_id: int, steps: list[int]) -> dict[str, list]:
    """tokens seen and wall time at each evaluation step, from the loss points there."""
    if not steps:
        return {"tokens": [], "elapsed": []}
    rows = (
        s.connection()
        .execute(
            select(LossPoint.step, LossPoint.tokens_seen, LossPoint.elapsed_s).where(
                LossPoint.run_id == run_id, LossPoint.step.in_(steps)
            )
        )
        .all()
    )
    logged = {r.step: r for r in rows}
    return {
        "tokens": [logged[x].tokens_seen if x in logged else None for x in steps],
        "elapsed": [logged[x].elapsed_s if x in logged else None for x in steps],
    }


def _train_curve(s: Session, run_id: int, max_points: int) -> dict[str, list]:
    last = s.scalar(select(func.max(LossPoint.step)).where(LossPoint.run_id == run_id))
    if last is None:
        return {"step": [], "loss": [], "tokens": [], "elapsed": []}
    bucket = max(1, -(-(last + 1) // max_points))
    group = LossPoint.step // bucket
    rows = (
        s.connection()
        .execute(
            select(
                func.max(LossPoint.step),
                func.avg(LossPoint.loss),
                func.max(LossPoint.tokens_seen),
                func.max(LossPoint.elapsed_s),
            )
            .where(LossPoint.run_id == run_id)
            .group_by(group)
            .order_by(group)
        )
        .all()
    )
    return {
        "step": [r[0] for r in rows],
        "loss": [float(r[1]) for r in rows],
        "tokens": [r[2] for r in rows],
        "elapsed": [r[3] for r in rows],
    }
