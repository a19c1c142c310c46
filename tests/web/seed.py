"""Rows for dashboard tests, written through the real models into a real database.

These are data, not mocks: the pages and the API read them exactly as they read what a
worker writes. `tests/jobs` covers workers writing them for real.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from shared.contracts.grid import DEFAULT_EVAL_GRID
from shared.contracts.specs import TrainSpec
from shared.db import session_scope
from shared.models import (
    Checkpoint,
    EvalPoint,
    Job,
    JobKind,
    JobStatus,
    LossPoint,
    Run,
    Sample,
    SampleSet,
    utcnow,
)


def ce(ratio: float, step: int, offset: float = 0.0) -> float:
    """A plausible CE(t): higher at high ratios, falling with training."""
    return 3.0 + 3.0 * ratio + 2.0 * math.exp(-step / 300) + offset


def add_run(
    name: str = "run",
    *,
    status: JobStatus = JobStatus.SUCCEEDED,
    steps: int = 400,
    eval_every: int = 100,
    log_every: int = 10,
    ratios: tuple[float, ...] = tuple(DEFAULT_EVAL_GRID),
    preset: str = "tiny",
    tags: list[str] | None = None,
    offset: float = 0.0,
    spec_overrides: dict[str, Any] | None = None,
    progress_step: int | None = None,
) -> int:
    """A run with its training job, loss points, eval points and one checkpoint per eval."""
    spec = TrainSpec.from_preset(preset, max_steps=steps, **(spec_overrides or {}))
    done = steps if progress_step is None else progress_step
    now = utcnow()
    with session_scope() as s:
        run = Run(
            name=name,
            preset=preset,
            tags=tags or [],
            spec=spec.model_dump(mode="json"),
            status=status,
            step=done,
            max_steps=steps,
            tokens_seen=done * spec.batch_size * spec.seq_len,
            started_at=now - timedelta(seconds=done),
            finished_at=now if status.finished else None,
        )
        s.add(run)
        s.flush()
        s.add(
            Job(
                kind=JobKind.TRAIN,
                status=status,
                run_id=run.id,
                spec=run.spec,
                progress=done / steps,
                started_at=run.started_at,
                finished_at=run.finished_at,
                attempts=1,
            )
        )
        tokens = spec.batch_size * spec.seq_len
        s.add_all(
            LossPoint(
                run_id=run.id,
                step=k,
                loss=ce(0.5, k, offset),
                mask_ratio=0.5,
                lr=1e-3,
                tokens_seen=k * tokens,
                elapsed_s=float(k),
            )
            for k in range(log_every, done + 1, log_every)
        )
        for k in range(eval_every, done + 1, eval_every):
            s.add_all(
                EvalPoint(
                    run_id=run.id, step=k, ratio=r, loss=ce(r, k, offset), accuracy=0.5 - r / 4
                )
                for r in ratios
            )
            s.add(Checkpoint(run_id=run.id, step=k, url=f"file:///nowhere/run-{run.id}/step-{k}"))
        if status == JobStatus.SUCCEEDED and done >= eval_every:
            from shared.contracts.bound import elbo_bound

            b = elbo_bound(list(ratios), [ce(r, done, offset) for r in ratios])
            run.summary = {"ppl_bound": b.perplexity, "nll_bound": b.nats_per_token}
        return run.id


def add_sample_set(
    run_id: int,
    texts: list[str],
    *,
    prompt: str = "In the beginning",
    settings: dict[str, Any] | None = None,
    trajectory: bool = True,
) -> int:
    """A sample set on the run's last checkpoint; each sample gets a 3-pass trajectory."""
    settings = settings or {
        "schedule": "linear",
        "sampling": "topk",
        "temperature": 0.7,
        "steps": 3,
        "strategy": "entropy",
        "seed": 0,
    }
    with session_scope() as s:
        ckpt = s.query(Checkpoint).filter_by(run_id=run_id).order_by(Checkpoint.step.desc()).first()
        job = Job(
            kind=JobKind.GENERATE, status=JobStatus.SUCCEEDED, run_id=run_id, spec={}, progress=1.0
        )
        s.add(job)
        s.flush()
        ss = SampleSet(
            job_id=job.id,
            checkpoint_id=ckpt.id,
            settings=settings,
            metrics={"distinct_2": 0.6, "max_token_share": 0.1, "entropy": 4.2},
        )
        s.add(ss)
        s.flush()
        for i, text in enumerate(texts):
            words = text.split()
            n_prompt = len(prompt.split())
            given = [i < n_prompt for i in range(len(words))]
            committed = [-1 if g else (p % 3) for p, g in enumerate(given)]
            steps = [
                {
                    "step": k,
                    "text": "",
                    "tokens": [
                        (" " + w) if given[p] or committed[p] <= k else None
                        for p, w in enumerate(words)
                    ],
                }
                for k in range(3)
            ]
            s.add(
                Sample(
                    sample_set_id=ss.id,
                    position=i,
                    prompt=prompt,
                    text=text,
                    seed=i,
                    metrics={"forward_passes": 3},
                    trajectory={"steps": steps, "given": given, "committed_at": committed}
                    if trajectory
                    else None,
                )
            )
        return ss.id


def in_frontier(set_id: int, name: str, judge_ppl: float = 42.0) -> None:
    """Make a sample set a point of frontier `name`: its job's spec names the frontier and
    the set has judged metrics, as a frontier's generation job writes them."""
    with session_scope() as s:
        ss = s.get(SampleSet, set_id)
        ss.metrics = {
            **(ss.metrics or {}),
            "forward_passes": 3,
            "seconds_per_sample": 0.01,
            "judge": "checkpoint 1",
            "judge_ppl": judge_ppl,
            "unigram_entropy": 2.0,
            "entropy_tokens": "judge",
            "mauve": None,
            "mauve_reason": "MAUVE needs at least 100 samples; this set has 1",
        }
        job = s.get(Job, ss.job_id)
        job.spec = {"frontier": name, "checkpoint": ss.checkpoint_id, "length": 8}
