"""Several runs side by side: rows, evaluation curves, a settings diff, the latest sample
metrics, and samples of the same prompt, seed and sampler settings paired up."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.contracts.options import DIFFUSION_ONLY
from shared.models import Checkpoint, Sample, SampleSet
from web.queries.common import flat
from web.queries.curves import MAX_POINTS, run_curves
from web.queries.references import runs_matched
from web.queries.runs import get_run, run_row, train_jobs
from web.textdiff import generated_diff

MAX_COMPARE = 8
UNMASKING = frozenset(DIFFUSION_ONLY.values())  # sampler settings an AR run does not read


def compare(s: Session, run_ids: list[int], max_points: int = MAX_POINTS) -> dict[str, Any]:
    runs = [get_run(s, i) for i in run_ids]
    jobs = train_jobs(s, run_ids)
    flats = [flat(r.spec) for r in runs]
    fields = sorted(set().union(*flats))
    settings = [
        {
            "field": f,
            "values": [fl.get(f) for fl in flats],
            "same": all(fl.get(f) == flats[0].get(f) for fl in flats),
        }
        for f in fields
    ]
    rows = [run_row(r, jobs.get(r.id)) for r in runs]
    return {
        "runs": rows,
        "curves": {str(r.id): run_curves(s, r.id, max_points, with_train=False) for r in runs},
        "settings": settings,
        "sample_metrics": {str(r.id): _latest_sample_metrics(s, r.id) for r in runs},
        # Judged sets read at human text's diversity (the number to compare runs by).
        "matched": {str(k): v for k, v in runs_matched(s, run_ids).items()},
        "samples": _paired_samples(s, rows),
    }


def _latest_sample_metrics(s: Session, run_id: int) -> dict[str, Any] | None:
    row = s.execute(
        select(SampleSet.id, SampleSet.metrics, SampleSet.settings)
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .where(Checkpoint.run_id == run_id)
        .order_by(SampleSet.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {"sample_set_id": row.id, "settings": row.settings, **(row.metrics or {})}


def _settings_key(settings: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in settings.items()))


def _paired_samples(
    s: Session, runs: list[dict[str, Any]], limit: int = 12
) -> list[dict[str, Any]]:
    """Samples with the same prompt, seed and sampler settings from every run, side by side,
    each with a word-level diff of what it generated against the first run's.

    An AR run samples token by token: its samples have no unmasking settings, so they pair
    with a diffusion run's samples of any. A pair's `settings` are the ones its samples
    share; `own` gives each run's unmasking settings (empty for an AR run)."""
    run_ids = [r["id"] for r in runs]
    ar = {r["id"] for r in runs if r["objective"] == "ar"}
    rows = s.execute(
        select(Checkpoint.run_id, Sample.prompt, Sample.seed, Sample.text, SampleSet.settings)
        .join(SampleSet, SampleSet.id == Sample.sample_set_id)
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .where(Checkpoint.run_id.in_(run_ids))
        .order_by(Sample.id.desc())
        .limit(5000)
    ).all()
    # (prompt, seed, shared settings) -> run -> unmasking settings -> (them, text)
    groups: dict[tuple, dict[int, dict[tuple, tuple]]] = defaultdict(lambda: defaultdict(dict))
    shared_of: dict[tuple, dict[str, Any]] = {}  # the shared settings as stored, for display
    for r in rows:
        settings = {k: v for k, v in (r.settings or {}).items() if k != "seed"}
        shared = {k: v for k, v in settings.items() if k not in UNMASKING}
        own = {} if r.run_id in ar else {k: v for k, v in settings.items() if k in UNMASKING}
        key = (r.prompt, r.seed, _settings_key(shared))
        groups[key][r.run_id].setdefault(_settings_key(own), (own, r.text))  # newest wins
        shared_of.setdefault(key, shared)
    out = []
    for key, by_run in groups.items():
        prompt, seed, _ = key
        # One pair per unmasking setting the diffusion runs used (one, if none did).
        variants = dict.fromkeys(v for i, found in by_run.items() if i not in ar for v in found)
        for variant in variants or [()]:
            picked = {
                i: next(iter(found.values())) if i in ar else found.get(variant)
                for i, found in by_run.items()
            }
            texts = {i: p[1] for i, p in picked.items() if p is not None}
            if len(texts) < 2:
                continue
            base = texts.get(run_ids[0], next(iter(texts.values())))
            out.append(
                {
                    "prompt": prompt,
                    "seed": seed,
                    "settings": shared_of[key],
                    "own": {str(i): p[0] for i, p in picked.items() if p is not None},
                    "texts": {
                        str(i): {"text": texts[i], **generated_diff(prompt, base, texts[i])}
                        if i in texts
                        else None
                        for i in run_ids
                    },
                }
            )
            if len(out) >= limit:
                return out
    return out
