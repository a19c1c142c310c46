"""Several runs side by side: rows, evaluation curves, a settings diff, the latest sample
metrics, and samples of the same prompt, seed and sampler settings paired up."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Checkpoint, Sample, SampleSet
from web.queries.common import flat
from web.queries.curves import MAX_POINTS, run_curves
from web.queries.runs import get_run, run_row, train_jobs
from web.textdiff import generated_diff

MAX_COMPARE = 8


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
    return {
        "runs": [run_row(r, jobs.get(r.id)) for r in runs],
        "curves": {str(r.id): run_curves(s, r.id, max_points, with_train=False) for r in runs},
        "settings": settings,
        "sample_metrics": {str(r.id): _latest_sample_metrics(s, r.id) for r in runs},
        "samples": _paired_samples(s, run_ids),
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
    return tuple(sorted((k, repr(v)) for k, v in settings.items() if k != "seed"))


def _paired_samples(s: Session, run_ids: list[int], limit: int = 12) -> list[dict[str, Any]]:
    """Samples with the same prompt, seed and sampler settings from every run, side by side,
    each with a word-level diff of what it generated against the first run's."""
    rows = s.execute(
        select(Checkpoint.run_id, Sample.prompt, Sample.seed, Sample.text, SampleSet.settings)
        .join(SampleSet, SampleSet.id == Sample.sample_set_id)
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .where(Checkpoint.run_id.in_(run_ids))
        .order_by(Sample.id.desc())
        .limit(5000)
    ).all()
    by_key: dict[tuple, dict[int, str]] = defaultdict(dict)
    raw: dict[tuple, dict[str, Any]] = {}  # the settings as stored, for display
    for r in rows:
        key = (r.prompt, r.seed, _settings_key(r.settings or {}))
        by_key[key].setdefault(r.run_id, r.text)  # newest wins
        raw.setdefault(key, {k: v for k, v in (r.settings or {}).items() if k != "seed"})
    out = []
    for key, texts in by_key.items():
        prompt, seed, _ = key
        if len(texts) < 2:
            continue
        base = texts.get(run_ids[0], next(iter(texts.values())))
        out.append(
            {
                "prompt": prompt,
                "seed": seed,
                "settings": raw[key],
                "texts": {
                    str(i): {"text": texts[i], **generated_diff(prompt, base, texts[i])}
                    if i in texts
                    else None
                    for i in run_ids
                },
            }
        )
        if len(out) >= limit:
            break
    return out
