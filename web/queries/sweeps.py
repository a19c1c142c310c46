"""Sweeps as the pages and the API show them: the list, and one sweep's trials with
best-so-far, the parameters for a parallel-coordinates chart, and parameter importance."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from shared import sweeps as sweep_state
from shared.contracts.sweep import JUDGED_METRICS, SweepSpec
from shared.models import JobStatus, Sweep, SweepTrial

SWEEPS_LISTED = 200


def list_sweeps(s: Session) -> list[dict[str, Any]]:
    trials = (
        select(SweepTrial.sweep_id, func.count().label("n"))
        .group_by(SweepTrial.sweep_id)
        .subquery()
    )
    rows = s.execute(
        select(Sweep, func.coalesce(trials.c.n, 0))
        .outerjoin(trials, trials.c.sweep_id == Sweep.id)
        .order_by(Sweep.id.desc())
        .limit(SWEEPS_LISTED)
    ).all()
    out = []
    for sweep, n in rows:
        spec = SweepSpec.model_validate(sweep.spec)
        out.append(
            {
                "id": sweep.id,
                "name": sweep.name,
                "status": sweep.status,
                "method": spec.method,
                "metric": spec.metric.name,
                "goal": spec.metric.goal,
                "trials": n,
                "trial_cap": sweep_state.trial_cap(spec),
                "created_at": sweep.created_at.isoformat(),
            }
        )
    return out


def sweep_detail(s: Session, sweep_id: int) -> dict[str, Any] | None:
    sweep = s.scalar(
        select(Sweep)
        .where(Sweep.id == sweep_id)
        .options(selectinload(Sweep.trials).selectinload(SweepTrial.runs))
    )
    if sweep is None:
        return None
    spec = SweepSpec.model_validate(sweep.spec)
    trials = list(sweep.trials)
    views = [sweep_state.trial_view(spec, t) for t in trials]
    sign = 1.0 if spec.metric.goal == "minimize" else -1.0
    rows, best_so_far, best, compute = [], [], None, 0
    for view, trial in zip(views, trials, strict=True):
        compute += view.steps
        if view.value is not None and (best is None or sign * view.value < sign * best):
            best = view.value
        best_so_far.append({"trial": view.number, "steps": compute, "best": best})
        rows.append(
            {
                "number": view.number,
                "state": view.state,
                "value": view.value,
                "spread": view.spread,
                "steps": view.steps,
                "params": view.params,
                "pruned_at": (trial.system_attrs or {}).get(sweep_state.PRUNED_AT),
                # Trained, its samples being drawn and judged (a judged metric only).
                "judging": view.state == "running"
                and bool(trial.runs)
                and all(r.status == JobStatus.SUCCEEDED for r in trial.runs),
                "last_report": _last(view.intermediate),
                "runs": [
                    {"id": r.id, "status": r.status, "step": r.step, "seed": r.spec.get("seed")}
                    for r in trial.runs
                ],
            }
        )
    counts: dict[str, int] = {}
    for view in views:
        counts[view.state] = counts.get(view.state, 0) + 1
    return {
        "id": sweep.id,
        "name": sweep.name,
        "status": sweep.status,
        "created_at": sweep.created_at.isoformat(),
        "finished_at": sweep.finished_at.isoformat() if sweep.finished_at else None,
        "spec": spec.model_dump(mode="json"),
        "judged": spec.metric.name in JUDGED_METRICS,
        "trial_cap": sweep_state.trial_cap(spec),
        "counts": counts,
        "best": best,
        "trials": rows,
        "best_so_far": best_so_far,
        "parameters": _axes(spec),
        "importance": _importance(sweep, spec, views, trials),
    }


def _last(intermediate: dict[int, float]) -> dict[str, float] | None:
    if not intermediate:
        return None
    step = max(intermediate)
    return {"step": step, "value": intermediate[step]}


def _axes(spec: SweepSpec) -> list[dict[str, Any]]:
    """Each swept parameter with its range, for the parallel-coordinates chart."""
    out = []
    for name, p in spec.parameters.items():
        if p.value is not None:
            continue
        axis: dict[str, Any] = {"name": name}
        if p.values is not None:
            axis |= {"kind": "choice", "values": p.values}
        else:
            axis |= {
                "kind": "range",
                "min": p.min,
                "max": p.max,
                "log": "log" in (p.distribution or ""),
            }
        out.append(axis)
    return out


def _importance(sweep, spec, views, trials) -> dict[str, Any]:
    """Optuna's parameter importance over the complete trials, or why not. PED-ANOVA (no
    scikit-learn, which the dashboard does not install; fANOVA needs it)."""
    complete = [v for v in views if v.state == "complete"]
    swept = [a["name"] for a in _axes(spec)]
    if len(swept) < 2:
        return {"scores": None, "reason": "importance compares two or more swept parameters"}
    if len(complete) < 3:
        return {
            "scores": None,
            "reason": f"needs 3 complete trials ({len(complete)} so far)",
        }
    # The same complete trials always give the same scores, so they are computed once per
    # change: rebuilding the study and PED-ANOVA take ~0.5 s at 500 trials, and a live page
    # asks every few seconds.
    key = (sweep.id, tuple(swept), tuple((v.number, v.value) for v in complete))
    hit = _IMPORTANCE.get(key)
    if hit is None:
        hit = _compute_importance(sweep_state.rebuild_study(sweep, spec, views, trials), swept)
        if len(_IMPORTANCE) >= IMPORTANCE_CACHED:
            _IMPORTANCE.pop(next(iter(_IMPORTANCE)))  # the oldest
        _IMPORTANCE[key] = hit
    return hit


IMPORTANCE_CACHED = 32  # sweeps whose importance this process keeps
_IMPORTANCE: dict[tuple, dict[str, Any]] = {}


def _compute_importance(study: optuna.Study, swept: list[str]) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            scores = optuna.importance.get_param_importances(
                study, evaluator=evaluator, params=swept
            )
    except (RuntimeError, ValueError) as exc:  # e.g. a parameter that never varied
        return {"scores": None, "reason": str(exc)}
    return {"scores": dict(scores), "reason": None}
