"""Human references and quality read at matched diversity, as the pages show them.

`human_references` reads the stored measures of held-out human text (`HumanReference`);
`matched_lines` groups judged sample sets into lines over temperature (one per checkpoint,
strategy, steps and judge: sets of different judges never share a line) and reads each at
its human reference's diversity; `best_matched` is the one number the runs list and the
compare page show for a run's judged sets.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.contracts.matched import LinePoint, matched_reading
from shared.contracts.options import DEFAULT_JUDGE
from shared.models import Checkpoint, HumanReference


def judge_label(s: Session, source: str | None) -> str | None:
    """A judge as the pages name it: an AR checkpoint's artifact URL (as a queued job's spec
    stores it) as "checkpoint N (run R, step S)", as the worker names it; else unchanged."""
    if not source or "://" not in source:
        return source
    ckpt = s.scalars(select(Checkpoint).where(Checkpoint.url == source.rstrip("/"))).first()
    if ckpt is None:
        return "an AR checkpoint"
    return f"checkpoint {ckpt.id} (run {ckpt.run_id}, step {ckpt.step})"


def human_references(s: Session, ids: set[int | None]) -> list[dict[str, Any]]:
    """The human references with these ids, by id: their key and measures."""
    wanted = sorted(i for i in ids if isinstance(i, int))
    if not wanted:
        return []
    rows = s.scalars(select(HumanReference).where(HumanReference.id.in_(wanted))).all()
    return [reference_dict(r) for r in sorted(rows, key=lambda r: r.id)]


def reference_dict(r: HumanReference) -> dict[str, Any]:
    m = r.metrics or {}
    return {
        "id": r.id,
        "dataset": r.dataset,
        "judge": r.judge,
        "tokenizer": r.tokenizer,
        "length": r.length,
        "texts": m.get("texts"),
        "judge_ppl": m.get("judge_ppl"),
        "unigram_entropy": m.get("unigram_entropy"),
        "repetition": m.get("repetition"),
        "mauve": m.get("mauve"),
        "mauve_reason": m.get("mauve_reason") or m.get("reason"),
    }


def _label(p: dict[str, Any], steps_vary: bool, judges: set) -> str:
    label = f"run {p['run_id']} · {'AR' if p['strategy'] == 'ar' else p['strategy']}"
    if steps_vary and p.get("steps") is not None:
        label += f" · {p['steps']} steps"
    if len(judges) > 1:
        label += f" · judge {p['judge']}"
    return label


def matched_lines(
    points: list[dict[str, Any]], references: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Quality-diversity lines of judged `points` (dicts with checkpoint_id, run_id,
    strategy, steps, temperature, judge, judge_ppl, unigram_entropy, repetition,
    human_reference_id): each line's point indices by temperature and its `matched`
    reading at its human reference's entropy (None with the reason when it has none)."""
    by_id = {r["id"]: r for r in references}
    judged = [i for i, p in enumerate(points) if p.get("judge") and p.get("judge_ppl")]
    judges = {points[i]["judge"] for i in judged}
    groups: dict[tuple, list[int]] = {}
    for i in judged:
        p = points[i]
        key = (p["checkpoint_id"], p["strategy"], p.get("steps"), p["judge"])
        groups.setdefault(key, []).append(i)
    steps_vary = len({k[2] for k in groups if k[1] != "ar"}) > 1
    lines = []
    for (ckpt, strategy, steps, judge), members in groups.items():
        members.sort(key=lambda i: points[i].get("temperature") or 0.0)
        first = points[members[0]]
        ref_ids = [points[i].get("human_reference_id") for i in members]
        reference = next((by_id[r] for r in ref_ids if r in by_id), None)
        if reference is None or reference.get("unigram_entropy") is None:
            matched = {"judge_ppl": None, "reason": "no human reference for this judge yet"}
        else:
            reading = matched_reading(
                [
                    LinePoint(
                        diversity=points[i]["unigram_entropy"],
                        judge_ppl=points[i]["judge_ppl"],
                        repetition=points[i].get("repetition"),
                        temperature=points[i].get("temperature"),
                    )
                    for i in members
                    if points[i].get("unigram_entropy") is not None
                ],
                reference["unigram_entropy"],
            )
            matched = reading.as_dict()
        lines.append(
            {
                "label": _label(first, steps_vary, judges),
                "checkpoint_id": ckpt,
                "run_id": first["run_id"],
                "objective": first.get("objective"),
                "strategy": strategy,
                "steps": steps,
                "judge": judge,
                "human_reference_id": reference["id"] if reference else None,
                "points": members,
                "matched": matched,
            }
        )
    lines.sort(key=lambda line: (line["objective"] != "ar", line["label"]))
    return lines


def best_matched(lines: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The lowest matched judge perplexity among `lines`, preferring the default judge's
    lines (one judge only: numbers of different judges are not compared), with its line's
    label and judge; else the first line's reason; None without judged lines."""
    if not lines:
        return None
    judges = [line["judge"] for line in lines]
    judge = DEFAULT_JUDGE if DEFAULT_JUDGE in judges else judges[0]
    mine = [line for line in lines if line["judge"] == judge]
    read = [line for line in mine if line["matched"].get("judge_ppl") is not None]
    if not read:
        line = mine[0]
        return {"judge_ppl": None, "reason": line["matched"].get("reason"), "judge": judge}
    line = min(read, key=lambda x: x["matched"]["judge_ppl"])
    return {
        "judge_ppl": line["matched"]["judge_ppl"],
        "repetition": line["matched"].get("repetition"),
        "line": line["label"],
        "judge": judge,
        "reason": None,
    }


def runs_matched(s: Session, run_ids: list[int]) -> dict[int, dict[str, Any] | None]:
    """Per run: `best_matched` over the judged sample sets of all its checkpoints (lines over
    temperature, each read at its human reference's diversity); None without judged sets."""
    from shared.models import SampleSet

    if not run_ids:
        return {}
    rows = s.execute(
        select(SampleSet.settings, SampleSet.metrics, Checkpoint.id, Checkpoint.run_id)
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .where(Checkpoint.run_id.in_(run_ids))
    ).all()
    points: dict[int, list[dict[str, Any]]] = {r: [] for r in run_ids}
    for settings, metrics, ckpt_id, run_id in rows:
        m, st = metrics or {}, settings or {}
        if not (m.get("judge") and m.get("judge_ppl")):
            continue
        ar = m.get("objective") == "ar"
        points[run_id].append(
            {
                "checkpoint_id": ckpt_id,
                "run_id": run_id,
                "objective": m.get("objective"),
                "strategy": "ar" if ar else st.get("strategy"),
                "steps": None if ar else st.get("steps"),
                "temperature": st.get("temperature"),
                **{k: m.get(k) for k in ("judge", "judge_ppl", "unigram_entropy", "repetition")},
                "human_reference_id": m.get("human_reference_id"),
            }
        )
    refs = human_references(s, {p["human_reference_id"] for ps in points.values() for p in ps})
    return {r: best_matched(matched_lines(ps, refs)) for r, ps in points.items()}
