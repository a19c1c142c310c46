"""Sweeps over the job system's own rows: trials asked under a lock, never more than the
concurrency at once, never twice; a finished run's metric told; the pruner's decisions;
pause, resume, extend, stop. Runs are driven through the real job state machine (claim,
succeed, fail) on SQLite and PostgreSQL; no worker is needed to decide what runs next."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from shared import jobs, submit, sweeps
from shared.contracts.specs import SpecError
from shared.contracts.sweep import SweepSpec
from shared.db import session_scope
from shared.models import (
    HumanReference,
    Job,
    JobKind,
    JobStatus,
    Run,
    Sweep,
    SweepStatus,
    SweepTrial,
)
from shared.storage import ArtifactStore
from worker import results


def _spec(dataset, **overrides) -> SweepSpec:
    values = {
        "name": "lr-sweep",
        "base": {
            "preset": "tiny",
            "dataset": str(dataset),
            "max_steps": 40,
            "eval_every": 10,
            "scratch": {"layers": 1, "hidden": 32, "heads": 2, "vocab_size": 400},
        },
        "method": "random",
        "parameters": {"lr": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"}},
        "run_cap": 5,
        "concurrency": 2,
        **overrides,
    }
    return SweepSpec.model_validate(values)


def _runs(sweep_id: int, status: JobStatus | None = None) -> list[Run]:
    with session_scope() as s:
        q = (
            select(Run)
            .join(SweepTrial, Run.sweep_trial_id == SweepTrial.id)
            .where(SweepTrial.sweep_id == sweep_id)
            .order_by(Run.id)
        )
        if status is not None:
            q = q.where(Run.status == status)
        rows = s.scalars(q).all()
        s.expunge_all()
        return list(rows)


def _job_of(run_id: int) -> int:
    with session_scope() as s:
        return s.scalar(select(Job.id).where(Job.run_id == run_id))


def _finish(run: Run, nll: float | None, *, ok: bool = True) -> None:
    """Run `run`'s job through the state machine as a worker would, then top up."""
    job_id = _job_of(run.id)
    claim = jobs.claim(job_id, "test-worker")
    assert claim is not None
    if ok:
        results.merge_run_summary(claim, run.id, {"nll_bound": nll})
        jobs.succeed(claim)
    else:
        jobs.fail(claim, "boom")
    sweeps.after_job(job_id)


def _status(sweep_id: int) -> SweepStatus:
    with session_scope() as s:
        return SweepStatus(s.get(Sweep, sweep_id).status)


def test_trials_run_at_the_concurrency_until_the_cap_then_the_sweep_finishes(job_env):
    sweep_id, _ = sweeps.create(_spec(job_env))
    finished = 0
    while True:
        queued = _runs(sweep_id, JobStatus.QUEUED)
        if not queued:
            break
        assert len(queued) <= 2  # never more than `concurrency` at once
        _finish(queued[0], nll=5.0 - finished * 0.1)
        finished += 1
    runs = _runs(sweep_id)
    assert len(runs) == 5 and finished == 5
    assert all(1e-4 <= r.spec["lr"] <= 1e-2 for r in runs)
    assert len({r.spec["lr"] for r in runs}) == 5  # five configurations, not one five times
    assert _status(sweep_id) == SweepStatus.FINISHED
    with session_scope() as s:
        numbers = s.scalars(select(SweepTrial.number).where(SweepTrial.sweep_id == sweep_id)).all()
    assert sorted(numbers) == [0, 1, 2, 3, 4]


def test_a_grid_sweep_runs_every_point_exactly_once(job_env):
    spec = _spec(
        job_env,
        method="grid",
        parameters={"lr": {"values": [1e-3, 2e-3, 3e-3]}, "warmup_steps": {"values": [0, 4]}},
        run_cap=100,
        concurrency=3,
    )
    sweep_id, _ = sweeps.create(spec)
    while queued := _runs(sweep_id, JobStatus.QUEUED):
        _finish(queued[0], nll=4.0)
    points = sorted((r.spec["lr"], r.spec["warmup_steps"]) for r in _runs(sweep_id))
    assert points == sorted((lr, w) for lr in (1e-3, 2e-3, 3e-3) for w in (0, 4))
    assert _status(sweep_id) == SweepStatus.FINISHED


def test_concurrent_top_ups_never_ask_a_trial_twice(job_env):
    sweep_id, _ = sweeps.create(_spec(job_env, run_cap=6, concurrency=6))
    # Six top-ups at once (as workers finishing jobs together, and the reconciler, do).
    threads = [threading.Thread(target=sweeps.top_up, args=(sweep_id,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope() as s:
        trials = s.scalar(select(func.count()).where(SweepTrial.sweep_id == sweep_id))
    assert trials == 6 and len(_runs(sweep_id)) == 6


def test_seeds_make_runs_per_trial_and_the_trial_value_is_their_mean(job_env):
    sweep_id, _ = sweeps.create(_spec(job_env, run_cap=1, concurrency=1, seeds=3))
    runs = _runs(sweep_id)
    assert len(runs) == 3 and len({r.sweep_trial_id for r in runs}) == 1
    assert sorted(r.spec["seed"] for r in runs) == [0, 1, 2]
    for run, nll in zip(runs, (4.0, 5.0, 6.0), strict=True):
        _finish(run, nll)
    with session_scope() as s:
        trial = s.scalars(select(SweepTrial).where(SweepTrial.sweep_id == sweep_id)).one()
        view = sweeps.trial_view(_spec(job_env, seeds=3), trial)
    assert view.state == "complete" and view.value == pytest.approx(5.0)
    assert view.spread == pytest.approx(1.0)


def test_the_pruner_stops_a_trial_that_is_behind_at_its_rung(job_env):
    spec = _spec(
        job_env,
        run_cap=8,
        concurrency=8,
        early_terminate={"type": "successive_halving", "min_iter": 1, "eta": 2},
    )
    sweep_id, _ = sweeps.create(spec)
    runs = _runs(sweep_id)
    assert len(runs) == 8
    # Seven trials, each better than the last, report at every evaluation and finish: none
    # is cut. Then an eighth reports far worse at its first rung.
    for i, run in enumerate(runs[:7]):
        value = 4.0 - i * 0.1
        assert [sweeps.report(run.id, step, value) for step in (10, 20, 30, 40)] == [False] * 4
        _finish(run, value)
    worst = runs[7]
    pruned = [sweeps.report(worst.id, step, 9.0) for step in (10, 20, 30, 40)]
    assert pruned == [True] * 4  # cut at its first rung, and it stays cut
    with session_scope() as s:
        trial = s.get(SweepTrial, worst.sweep_trial_id)
        assert trial.system_attrs[sweeps.PRUNED_AT] == 10


def test_a_run_outside_a_sweep_is_never_pruned(job_env):
    job = submit.submit_train(_spec(job_env).base_spec())
    assert sweeps.report(job.run_id, 10, 99.0) is False


def test_pause_resume_extend_stop(job_env):
    sweep_id, _ = sweeps.create(_spec(job_env, run_cap=2, concurrency=1))
    sweeps.pause(sweep_id)
    _finish(_runs(sweep_id, JobStatus.QUEUED)[0], 4.0)
    assert _runs(sweep_id, JobStatus.QUEUED) == []  # paused: no new trial
    sweeps.resume(sweep_id)
    _finish(_runs(sweep_id, JobStatus.QUEUED)[0], 4.0)
    assert _status(sweep_id) == SweepStatus.FINISHED
    sweeps.extend(sweep_id, 1)
    assert _status(sweep_id) == SweepStatus.RUNNING and len(_runs(sweep_id)) == 3
    sweeps.stop(sweep_id)
    assert _status(sweep_id) == SweepStatus.STOPPED
    assert [r.status for r in _runs(sweep_id)][-1] == JobStatus.CANCELLED
    with pytest.raises(sweeps.SweepError, match="stopped"):
        sweeps.resume(sweep_id)


def test_failed_trials_are_retried_with_the_same_configuration(job_env):
    sweep_id, _ = sweeps.create(_spec(job_env, run_cap=1, concurrency=1))
    run = _runs(sweep_id)[0]
    _finish(run, None, ok=False)
    assert _status(sweep_id) == SweepStatus.FINISHED
    assert sweeps.retry_failed(sweep_id) == [_job_of(run.id)]
    assert _runs(sweep_id, JobStatus.QUEUED)[0].id == run.id
    assert _status(sweep_id) == SweepStatus.RUNNING


def test_a_refused_source_stores_no_sweep(job_env):
    spec = _spec(job_env)
    bad = spec.model_copy(update={"base": {**spec.base, "dataset": "/etc/passwd"}})
    with pytest.raises(SpecError) as exc:
        sweeps.create(bad)
    assert exc.value.field == "dataset"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Sweep)) == 0
        assert s.scalar(select(func.count()).select_from(Run)) == 0


# ----------------------------------------------------------------------------- judged metrics


def _judged_spec(dataset, name: str = "mauve", **samples) -> SweepSpec:
    metric = {"name": name, "samples": {"temperatures": [0.7, 1.0], "judge": "none", **samples}}
    return _spec(dataset, run_cap=1, concurrency=1, metric=metric)


def _train_with_checkpoint(run: Run, tmp_path) -> int:
    """Run `run`'s training job through the state machine, storing a real checkpoint
    directory; returns the checkpoint's id."""
    job_id = _job_of(run.id)
    claim = jobs.claim(job_id, "test-worker")
    assert claim is not None
    weights = tmp_path / f"ckpt-{run.id}"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    url = ArtifactStore().put_dir(weights, f"runs/{run.id}/checkpoint-40")
    ckpt_id = results.put_checkpoint(claim, run.id, 40, url, {})
    results.merge_run_summary(claim, run.id, {"nll_bound": 4.0})
    jobs.succeed(claim)
    sweeps.after_job(job_id)
    return ckpt_id


def _sampling_jobs(run_id: int) -> list[Job]:
    with session_scope() as s:
        rows = s.scalars(
            select(Job).where(Job.run_id == run_id, Job.kind == JobKind.GENERATE)
        ).all()
        s.expunge_all()
        return list(rows)


def _write_sets(job: Job, ckpt_id: int, metrics: list[dict]) -> None:
    """Run sampling job `job` as a worker would: one stored set per temperature."""
    claim = jobs.claim(job.id, "test-worker")
    assert claim is not None
    for i, m in enumerate(metrics):
        results.add_sample_set(claim, ckpt_id, i, {"temperature": [0.7, 1.0][i]}, m, [])
    jobs.succeed(claim)
    sweeps.after_job(job.id)


def _trial(sweep_id: int, spec: SweepSpec) -> sweeps.TrialView:
    with session_scope() as s:
        trial = s.scalars(select(SweepTrial).where(SweepTrial.sweep_id == sweep_id)).one()
        return sweeps.trial_view(spec, trial)


def test_a_judged_metric_samples_each_trained_run_once_and_reads_its_sets(job_env, tmp_path):
    spec = _judged_spec(job_env)
    assert spec.metric.goal == "maximize"  # MAUVE: higher is better
    sweep_id, _ = sweeps.create(spec)
    run = _runs(sweep_id)[0]
    ckpt_id = _train_with_checkpoint(run, tmp_path)
    sweeps.top_up(sweep_id)  # again, as the reconciler would: still one sampling job
    sweeps.top_up_all()
    (job,) = _sampling_jobs(run.id)
    assert job.spec["checkpoint"] == ckpt_id and job.spec["judge"] is None
    assert job.spec["grid"]["temperatures"] == [0.7, 1.0] and job.priority == sweeps.JUDGE_PRIORITY
    assert _trial(sweep_id, spec).state == "running"  # trained, not judged: not done
    assert _status(sweep_id) == SweepStatus.RUNNING

    _write_sets(job, ckpt_id, [{"mauve": 0.2}, {"mauve": 0.5}])
    view = _trial(sweep_id, spec)
    assert view.state == "complete" and view.value == pytest.approx(0.5)  # the best set's
    assert _status(sweep_id) == SweepStatus.FINISHED
    judged = _runs(sweep_id)[0].summary["judged"]
    assert judged["job_id"] == job.id and [p["mauve"] for p in judged["points"]] == [0.2, 0.5]
    assert len(_sampling_jobs(run.id)) == 1


def test_a_failed_sampling_job_fails_its_trial_until_retried(job_env, tmp_path):
    spec = _judged_spec(job_env)
    sweep_id, _ = sweeps.create(spec)
    run = _runs(sweep_id)[0]
    ckpt_id = _train_with_checkpoint(run, tmp_path)
    (job,) = _sampling_jobs(run.id)
    claim = jobs.claim(job.id, "test-worker")
    jobs.fail(claim, "Traceback ...\nRuntimeError: out of memory")
    sweeps.after_job(job.id)
    view = _trial(sweep_id, spec)
    assert view.state == "failed" and view.value is None
    reason = _runs(sweep_id)[0].summary["judged"]["reason"]
    assert f"sampling job {job.id} failed: RuntimeError: out of memory" in reason
    assert _status(sweep_id) == SweepStatus.FINISHED

    sweeps.retry_failed(sweep_id)  # the run stays trained; its samples are drawn again
    first, second = _sampling_jobs(run.id)
    assert (first.id, second.status) == (job.id, JobStatus.QUEUED)
    assert _status(sweep_id) == SweepStatus.RUNNING
    _write_sets(second, ckpt_id, [{"mauve": 0.3}, {"mauve": None, "mauve_reason": "few"}])
    assert _trial(sweep_id, spec).value == pytest.approx(0.3)


def test_stopping_a_judged_sweep_cancels_its_sampling_and_says_so(job_env, tmp_path):
    spec = _judged_spec(job_env)
    sweep_id, _ = sweeps.create(spec.model_copy(update={"run_cap": 2, "concurrency": 2}))
    first = _runs(sweep_id)[0]
    _train_with_checkpoint(first, tmp_path)
    (sampling,) = _sampling_jobs(first.id)
    sweeps.stop(sweep_id)
    assert _sampling_jobs(first.id)[0].status == JobStatus.CANCELLED
    judged = _runs(sweep_id)[0].summary["judged"]
    assert judged["value"] is None and f"sampling job {sampling.id} cancelled" in judged["reason"]
    second = _runs(sweep_id)[1]  # its training was cancelled: no sampling is ever queued
    assert second.status == JobStatus.CANCELLED and _sampling_jobs(second.id) == []
    assert _status(sweep_id) == SweepStatus.STOPPED


def test_judge_ppl_matched_reads_the_line_at_human_entropy(job_env, tmp_path):
    spec = _judged_spec(job_env, "judge_ppl_matched", judge="smollm2-135m")
    sweep_id, _ = sweeps.create(spec)
    run = _runs(sweep_id)[0]
    ckpt_id = _train_with_checkpoint(run, tmp_path)
    with session_scope() as s:
        ref = HumanReference(
            dataset="d", judge="smollm2-135m", tokenizer="t", length=32,
            metrics={"unigram_entropy": 3.0},
        )  # fmt: skip
        s.add(ref)
        s.flush()
        ref_id = ref.id
    (job,) = _sampling_jobs(run.id)
    assert job.spec["judge"] == "smollm2-135m"
    line = [(2.0, 50.0), (4.0, 200.0)]  # entropy, judge ppl: 3.0 lies halfway, in log ppl
    _write_sets(
        job,
        ckpt_id,
        [{"unigram_entropy": e, "judge_ppl": p, "human_reference_id": ref_id} for e, p in line],
    )
    assert _trial(sweep_id, spec).value == pytest.approx(100.0)


def test_judged_value_says_why_there_is_none():
    assert sweeps.judged_value("mauve", [{"mauve": None}], None) == (
        None,
        "no sample set has a MAUVE score",
    )
    low = [{"unigram_entropy": 2.0, "judge_ppl": 40.0}, {"unigram_entropy": 2.5, "judge_ppl": 60.0}]
    value, reason = sweeps.judged_value("judge_ppl_matched", low, 3.0)
    assert value is None and "never reaches human diversity" in reason
    assert sweeps.judged_value("judge_ppl_matched", low, None)[0] is None


def test_a_bad_judge_stores_no_sweep(job_env):
    spec = _judged_spec(job_env, "judge_ppl_matched", judge="scratch")
    with pytest.raises(SpecError) as exc:
        sweeps.create(spec)
    assert exc.value.field == "metric.samples.judge"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Sweep)) == 0
