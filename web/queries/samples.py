"""Sample sets (one per sampler combination of a generation job) and their samples.

A set's `settings` are shown as its objective reads them: an AR run's sets have none of
the unmasking settings (`applicable_settings`), even those stored before they were dropped.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, func, literal_column, select
from sqlalchemy.orm import Session

from shared.contracts.options import applicable_settings
from shared.models import Checkpoint, Run, Sample, SampleSet
from web.errors import NotFound
from web.queries.common import iso

# A sample set's judged-quality metrics (`worker.bodies.quality`): shown together, judge
# perplexity always beside entropy, by the pages' `quality` macro, not one by one.
QUALITY_KEYS = frozenset(
    {
        "judge",
        "judge_ppl",
        "unigram_entropy",
        "entropy_tokens",
        "mauve",
        "mauve_reason",
        "mauve_featurizer",
        "mauve_references",
        "mauve_length",
        "objective",
        "repetition",
        "mauve_at_floor",
        "human_reference_id",
    }
)


def list_sample_sets(
    s: Session, *, run_id: int | None = None, checkpoint_id: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    objective = Run.spec["objective"].as_string()
    q = (
        select(SampleSet, Checkpoint.run_id, Checkpoint.step, objective, func.count(Sample.id))
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .join(Run, Run.id == Checkpoint.run_id)
        .outerjoin(Sample, Sample.sample_set_id == SampleSet.id)
        .group_by(SampleSet.id, Checkpoint.run_id, Checkpoint.step, objective)
        .order_by(SampleSet.id.desc())
        .limit(limit)
    )
    if run_id is not None:
        q = q.where(Checkpoint.run_id == run_id)
    if checkpoint_id is not None:
        q = q.where(SampleSet.checkpoint_id == checkpoint_id)
    return [
        {
            "id": ss.id,
            "job_id": ss.job_id,
            "checkpoint_id": ss.checkpoint_id,
            "run_id": run,
            "step": step,
            "combination": ss.combination,
            "objective": objective or "diffusion",
            "settings": applicable_settings(ss.settings or {}, objective or "diffusion"),
            "metrics": ss.metrics or {},
            "samples": n,
            "created_at": iso(ss.created_at),
        }
        for ss, run, step, objective, n in s.execute(q)
    ]


def sample_set_runs(s: Session) -> list[dict[str, Any]]:
    """Runs that have sample sets, newest first: [{"id", "name"}] (the samples page's filter)."""
    q = (
        select(Run.id, Run.name)
        .where(
            exists(
                select(literal_column("1"))
                .select_from(SampleSet)
                .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
                .where(Checkpoint.run_id == Run.id)
            )
        )
        .order_by(Run.id.desc())
    )
    return [{"id": i, "name": name} for i, name in s.execute(q)]


def sample_set_detail(s: Session, set_id: int) -> dict[str, Any]:
    ss = s.get(SampleSet, set_id)
    if ss is None:
        raise NotFound(f"no sample set with id {set_id}")
    ckpt = ss.checkpoint
    objective = (ckpt.run.spec or {}).get("objective", "diffusion")
    return {
        "id": ss.id,
        "job_id": ss.job_id,
        "checkpoint_id": ss.checkpoint_id,
        "run_id": ckpt.run_id,
        "step": ckpt.step,
        "combination": ss.combination,
        "objective": objective,
        "settings": applicable_settings(ss.settings or {}, objective),
        "metrics": ss.metrics or {},
        # Held-out human text measured the same way (same judge, tokenizer, length).
        "human": _human(s, (ss.metrics or {}).get("human_reference_id")),
        "created_at": iso(ss.created_at),
        "samples": [
            {
                "id": x.id,
                "position": x.position,
                "prompt": x.prompt,
                "text": x.text,
                "seed": x.seed,
                "metrics": x.metrics or {},
                "trajectory": x.trajectory,
            }
            for x in ss.samples
        ],
    }


def _human(s: Session, reference_id: Any) -> dict[str, Any] | None:
    from web.queries.references import human_references

    found = human_references(s, {reference_id}) if isinstance(reference_id, int) else []
    return found[0] if found else None
