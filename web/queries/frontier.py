"""Speed-quality frontiers: the sample sets of the generation jobs that share a frontier name.

A point is one sample set: its cost (mean forward passes and seconds per sample) and its
quality (judge perplexity with the samples' diversity, MAUVE or why there is none).

Two sets of lines. `lines` (cost): one per checkpoint, strategy, temperature and judge,
its points by cost; an AR checkpoint's points form lines of their own, the baseline the
others are read against. `diversity_lines` (quality-diversity): one per checkpoint,
strategy, steps and judge, its points by temperature, each with its judge perplexity read
at the diversity of human text under the same judge (`shared.contracts.matched`), and the
human references themselves as points. Sets scored by different judges never share a line.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Checkpoint, Job, JobKind, Run, SampleSet
from web.errors import NotFound
from web.queries.common import iso
from web.queries.references import human_references, judge_label, matched_lines

MAX_FRONTIERS_LISTED = 100


def _frontier_of():
    return Job.spec["frontier"].as_string()


def list_frontiers(s: Session, limit: int = MAX_FRONTIERS_LISTED) -> list[dict[str, Any]]:
    """Frontiers, newest first: name, jobs, sample sets so far, when it was submitted."""
    name = _frontier_of()
    q = (
        select(
            name.label("name"),
            func.count(func.distinct(Job.id)),
            func.count(SampleSet.id),
            func.min(Job.created_at),
        )
        .outerjoin(SampleSet, SampleSet.job_id == Job.id)
        .where(Job.kind == JobKind.GENERATE, name.is_not(None))
        .group_by(name)
        .order_by(func.min(Job.created_at).desc())
        .limit(limit)
    )
    return [
        {"name": n, "jobs": j, "sample_sets": k, "created_at": iso(t)}
        for n, j, k, t in s.execute(q)
    ]


def _point(ss: SampleSet, ckpt: Checkpoint, run: Run) -> dict[str, Any]:
    m = ss.metrics or {}
    settings = ss.settings or {}
    objective = m.get("objective") or (run.spec or {}).get("objective", "diffusion")
    return {
        "sample_set_id": ss.id,
        "job_id": ss.job_id,
        "checkpoint_id": ckpt.id,
        "run_id": run.id,
        "run_name": run.name,
        "step": ckpt.step,
        "objective": objective,
        "strategy": "ar" if objective == "ar" else settings.get("strategy"),
        "steps": None if objective == "ar" else settings.get("steps"),
        "temperature": settings.get("temperature"),
        "forward_passes": m.get("forward_passes"),
        "seconds_per_sample": m.get("seconds_per_sample"),
        "judge": m.get("judge"),
        "judge_ppl": m.get("judge_ppl"),
        "unigram_entropy": m.get("unigram_entropy"),
        "repetition": m.get("repetition"),
        "entropy_tokens": m.get("entropy_tokens"),
        "human_reference_id": m.get("human_reference_id"),
        "mauve": m.get("mauve"),
        "mauve_reason": m.get("mauve_reason"),
    }


def _lines(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per checkpoint, strategy and temperature, its points by cost."""
    temperatures = {p["temperature"] for p in points}
    runs_checkpoints: dict[int, set[int]] = {}
    for p in points:
        runs_checkpoints.setdefault(p["run_id"], set()).add(p["checkpoint_id"])
    judges = {p["judge"] for p in points}
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(points):
        key = (p["checkpoint_id"], p["strategy"], p["temperature"], p["judge"])
        groups.setdefault(key, []).append(i)
    lines = []
    for (ckpt, strategy, temperature, judge), members in groups.items():
        first = points[members[0]]
        label = f"run {first['run_id']} · {'AR' if strategy == 'ar' else strategy}"
        if len(runs_checkpoints[first["run_id"]]) > 1:
            label += f" @ step {first['step']}"
        if len(temperatures) > 1:
            label += f" · T={temperature:g}"
        if len(judges) > 1:
            label += f" · judge {judge or 'none'}"
        members.sort(key=lambda i: (points[i]["forward_passes"] or 0, points[i]["steps"] or 0))
        lines.append(
            {
                "label": label,
                "checkpoint_id": ckpt,
                "run_id": first["run_id"],
                "objective": first["objective"],
                "strategy": strategy,
                "temperature": temperature,
                "judge": judge,
                "points": members,
            }
        )
    lines.sort(key=lambda line: (line["objective"] != "ar", line["label"]))
    return lines


def frontier_points(s: Session, name: str) -> dict[str, Any]:
    """The frontier `name`: its jobs, its points and their lines (`NotFound` if no job
    carries that name)."""
    frontier_jobs = s.scalars(
        select(Job).where(Job.kind == JobKind.GENERATE, _frontier_of() == name).order_by(Job.id)
    ).all()
    if not frontier_jobs:
        raise NotFound(f"no frontier named {name!r}")
    rows = s.execute(
        select(SampleSet, Checkpoint, Run)
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .join(Run, Run.id == Checkpoint.run_id)
        .where(SampleSet.job_id.in_([j.id for j in frontier_jobs]))
        .order_by(SampleSet.id)
    ).all()
    points = [_point(ss, ckpt, run) for ss, ckpt, run in rows]
    spec = frontier_jobs[0].spec
    judged = [p["judge"] for p in points if p["judge"]]
    references = human_references(s, {p["human_reference_id"] for p in points})
    return {
        "name": name,
        # As the sets name it; before the first one, as the spec does (a checkpoint by id).
        "judge": judged[0] if judged else judge_label(s, spec.get("judge")),
        "judges": sorted(set(judged)),
        "length": spec.get("length"),
        "jobs": [
            {
                "id": j.id,
                "status": str(j.status),
                "progress": j.progress,
                "checkpoint_id": j.spec.get("checkpoint"),
                "run_id": j.run_id,
                "error": j.error,
            }
            for j in frontier_jobs
        ],
        "points": points,
        "lines": _lines(points),
        "references": references,
        "diversity_lines": matched_lines(points, references),
    }
