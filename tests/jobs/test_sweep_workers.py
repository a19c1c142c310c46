"""Sweeps on real workers: trials train as runs, the pruner stops the ones behind at an
evaluation (their runs end `pruned`, curves kept), and a worker killed mid-sweep plus a
flushed broker lose and duplicate no trial."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from shared import db, reconciler, sweeps
from shared.contracts.sweep import SweepSpec
from shared.models import (
    Job,
    JobStatus,
    LossPoint,
    Run,
    SampleSet,
    Sweep,
    SweepStatus,
    SweepTrial,
)
from tests.jobs.helpers import delete_broker_keys, wait_for
from tests.services import redis_url


def _spec(dataset, **overrides) -> SweepSpec:
    return SweepSpec.model_validate(
        {
            "name": "worker-sweep",
            "base": {
                "preset": "tiny",
                "dataset": str(dataset),
                "seq_len": 32,
                "batch_size": 8,
                "max_steps": 12,
                "warmup_steps": 0,
                "eval_every": 4,
                "save_every": 4,
                "log_every": 2,
                "eval_batches": 1,
                "eval_ratios": [0.5, 1.0],
                "mixed_precision": "no",
                "scratch": {"layers": 1, "hidden": 32, "heads": 2, "vocab_size": 400},
            },
            "method": "grid",
            # Sweep 1's grid order starts with 3e-3 (GridSampler seeded with the sweep id).
            "parameters": {"lr": {"values": [1e-6, 2e-6, 3e-6, 3e-3]}},
            "run_cap": 4,
            "concurrency": 1,
            **overrides,
        }
    )


def _sweep(sweep_id: int) -> tuple[SweepStatus, list[tuple[int, str, int, int]]]:
    """(status, [(trial number, run status, run step, jobs of the run)])."""
    with db.session_scope() as s:
        status = SweepStatus(s.get(Sweep, sweep_id).status)
        rows = s.execute(
            select(SweepTrial.number, Run.status, Run.step, func.count(Job.id))
            .join(Run, Run.sweep_trial_id == SweepTrial.id)
            .join(Job, Job.run_id == Run.id)
            .where(SweepTrial.sweep_id == sweep_id)
            .group_by(SweepTrial.number, Run.status, Run.step)
            .order_by(SweepTrial.number)
        ).all()
    return status, [tuple(r) for r in rows]


# The pruning path is the same in both modes (the database decides); the services mode is
# the next test's, where the broker matters.
@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_trials_train_and_the_pruner_stops_those_behind(job_env, workers):
    workers("w1")
    spec = _spec(job_env, early_terminate={"type": "successive_halving", "min_iter": 1, "eta": 2})
    sweep_id, _ = sweeps.create(spec)
    wait_for(lambda: _sweep(sweep_id)[0] == SweepStatus.FINISHED, 240, what="the sweep")
    _, rows = _sweep(sweep_id)
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    first, *rest = rows
    assert first[1] == JobStatus.SUCCEEDED and first[2] == 12
    pruned = [r for r in rest if r[1] == JobStatus.PRUNED]
    assert len(pruned) >= 2, rows  # behind the first at step 4: cut there
    assert all(r[2] < 12 for r in pruned), rows
    with db.session_scope() as s:
        run_id = s.scalar(select(Run.id).join(SweepTrial).where(SweepTrial.number == pruned[0][0]))
        assert s.scalar(select(func.count()).where(LossPoint.run_id == run_id)) > 0  # kept


@pytest.mark.parametrize("job_env", ["services"], indirect=True)
def test_a_killed_worker_and_a_flushed_broker_lose_and_repeat_no_trial(job_env, workers):
    first = workers("w1")
    spec = _spec(job_env, parameters={"lr": {"values": [1e-3, 2e-3, 3e-3]}}, run_cap=3)
    spec = spec.model_copy(update={"concurrency": 2})
    sweep_id, _ = sweeps.create(spec)

    def running() -> bool:
        return any(r[1] == JobStatus.RUNNING for r in _sweep(sweep_id)[1])

    wait_for(running, 90, what="a trial running")
    first.kill()  # SIGKILL: its trial's job is left claimed, heartbeat stopping
    # FLUSHALL as this deployment sees it: the queued trial's message is gone too.
    delete_broker_keys(redis_url(), os.environ["REDIS_KEY_PREFIX"])
    reconciler.reconcile(resend_after_s=0)
    workers("w2")
    wait_for(lambda: _sweep(sweep_id)[0] == SweepStatus.FINISHED, 300, what="the sweep")
    _, rows = _sweep(sweep_id)
    assert [r[0] for r in rows] == [0, 1, 2], rows  # three trials, each once
    assert all(r[1] == JobStatus.SUCCEEDED and r[2] == 12 and r[3] == 1 for r in rows), rows
    with db.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(SweepTrial)) == 3
        assert s.scalar(select(func.count()).select_from(Run)) == 3


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_judged_sweep_samples_its_trained_trials_on_the_workers(job_env, workers):
    workers("w1")
    metric = {
        "name": "mauve",
        "samples": {"temperatures": [1.0], "steps": 4, "length": 8, "judge": "none"},
    }
    base = {**_spec(job_env).base, "val_fraction": 0.25}  # held-out text enough for MAUVE
    spec = _spec(
        job_env, base=base, parameters={"lr": {"values": [3e-3]}}, run_cap=1, metric=metric
    )
    sweep_id, _ = sweeps.create(spec)
    wait_for(lambda: _sweep(sweep_id)[0] == SweepStatus.FINISHED, 240, what="the sweep")
    with db.session_scope() as s:
        trial = s.scalars(select(SweepTrial).where(SweepTrial.sweep_id == sweep_id)).one()
        view = sweeps.trial_view(spec, trial)
        (run,) = trial.runs
        sampling = s.scalars(select(Job).where(Job.run_id == run.id, Job.kind == "generate")).all()
        judged = run.summary["judged"]
        sets = s.scalars(select(SampleSet).where(SampleSet.job_id == sampling[0].id)).all()
        samples = sum(len(x.samples) for x in sets)
    assert [j.status for j in sampling] == [JobStatus.SUCCEEDED]
    assert view.state == "complete", judged
    assert 0.0 < view.value <= 1.0 and view.value == judged["points"][0]["mauve"]
    assert samples == 100
