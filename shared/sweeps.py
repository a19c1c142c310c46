"""Sweeps: Optuna's samplers and pruner over the job system's own rows.

Optuna supplies the algorithms (TPE, random and grid sampling; the Hyperband pruner).
The state is ours: a `Sweep` row, a `SweepTrial` row per configuration asked, and the
trial's ordinary training runs (one per seed). Each time a decision is due, the study is
rebuilt in memory from those rows (`_study`), asked or consulted, and what Optuna wrote
down (its trial system attributes: grid ids, pruner rungs) is stored back.

Why not Optuna's RDBStorage in the same database: its tables carry an Alembic version
table of their own, which collides with ours, and two stores of the same trials would
need reconciling after every crash (Optuna's heartbeat does not cover ask/tell). Here a
trial exists if and only if its row does, and the row, its runs and their jobs are
written in one transaction under a lock on the sweep: a worker death, a broker flush or a
restart loses no trial and never asks one twice. Queued jobs whose message was lost are
re-sent by the reconciler like any other.

Who calls what: `create` (API, CLI) and `top_up` after it; the worker calls `report` at
each evaluation of a trial's run (True: stop, the trial is pruned) and `after_job` when
its job ended; every worker's maintenance loop calls `top_up_all` as a safety net.

A judged metric (`mauve`, `judge_ppl_matched`): when a trial's run has trained, a top-up
queues one generation job on its last checkpoint (`metric.samples`), noted in the trial's
`JUDGE_JOBS` in the same transaction; when that job has ended, a top-up reads its sample
sets into the run's summary (`judged`: the value, or why there is none). Until then the
trial counts as running. The pruner still cuts at evaluations, on the held-out NLL the
runs report (negated for a metric that is better higher): samples are judged only at the end.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import optuna
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from shared import jobs, submit
from shared.contracts.matched import LinePoint, matched_reading
from shared.contracts.options import NO_JUDGE
from shared.contracts.specs import SpecError
from shared.contracts.sweep import JUDGED_METRICS, Parameter, SweepSpec, grid_size
from shared.db import session_scope
from shared.models import (
    HumanReference,
    Job,
    JobStatus,
    Run,
    SampleSet,
    Sweep,
    SweepStatus,
    SweepTrial,
    utcnow,
)

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

# Our own keys in a trial's system attributes: the step at which its pruner stopped it;
# {run_id: generation job id} of a judged metric's sampling of each of its runs.
PRUNED_AT = "td_pruned_at"
JUDGE_JOBS = "td_judge_jobs"
# A judging job runs before the next trials' training: it finishes a trial that is waiting.
JUDGE_PRIORITY = 1
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


class SweepError(ValueError):
    """A request that does not fit the sweep's state (e.g. resuming a stopped sweep)."""


class SweepNotFound(SweepError, LookupError):
    pass


# ----------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class TrialView:
    """A trial as Optuna and the pages see it, derived from its runs."""

    number: int
    params: dict[str, Any]
    state: str  # running | complete | pruned | failed
    value: float | None  # mean over its seeds' final metric (complete trials)
    spread: float | None  # standard deviation over seeds (more than one seed)
    steps: int  # trained steps, all seeds together
    intermediate: dict[int, float]  # step -> mean over seeds that all reported it
    run_ids: list[int]


def _final_metric(spec: SweepSpec, run: Run) -> float | None:
    summary = run.summary or {}
    if spec.metric.name in JUDGED_METRICS:
        value = (summary.get("judged") or {}).get("value")
    else:
        value = summary.get("nll_bound")
    return float(value) if value is not None else None


def _being_judged(spec: SweepSpec, runs: list[Run]) -> bool:
    """A judged metric's trial whose trained runs are not all judged yet."""
    return spec.metric.name in JUDGED_METRICS and any(
        "judged" not in (r.summary or {}) for r in runs
    )


def trial_view(spec: SweepSpec, trial: SweepTrial) -> TrialView:
    runs = list(trial.runs)
    statuses = {JobStatus(r.status) for r in runs}
    per_run = [
        {int(k): v for k, v in (trial.reports or {}).get(str(r.id), {}).items()} for r in runs
    ]
    steps_all = set.intersection(*(set(p) for p in per_run)) if per_run else set()
    # sum / len, not statistics.fmean: a sweep page computes this for every report of every
    # trial (25,000 for 500 trials of 50 evaluations), and fmean costs 3x as much.
    intermediate = {
        step: sum(p[step] for p in per_run) / len(per_run)
        for step in sorted(steps_all)
        if len(per_run) == spec.seeds
    }
    finals = [_final_metric(spec, r) for r in runs]
    value = spread = None
    if statuses & set(ACTIVE) or len(runs) < spec.seeds:
        state = "running"
    elif JobStatus.PRUNED in statuses or (trial.system_attrs or {}).get(PRUNED_AT) is not None:
        state = "pruned"
    elif statuses == {JobStatus.SUCCEEDED} and _being_judged(spec, runs):
        state = "running"
    elif statuses == {JobStatus.SUCCEEDED} and all(f is not None for f in finals):
        state = "complete"
        value = statistics.fmean(finals)  # type: ignore[arg-type]
        spread = statistics.stdev(finals) if len(finals) > 1 else None  # type: ignore[arg-type]
    else:
        state = "failed"
    return TrialView(
        trial.number,
        dict(trial.params),
        state,
        value,
        spread,
        sum(r.step for r in runs),
        intermediate,
        [r.id for r in runs],
    )


# ----------------------------------------------------------------------------- Optuna


def _distributions(spec: SweepSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, p in spec.parameters.items():
        if p.values is not None:
            out[name] = optuna.distributions.CategoricalDistribution(p.values)
        elif p.min is not None and p.max is not None:
            log_scale = bool(p.distribution and "log" in p.distribution)
            if p.is_int:
                out[name] = optuna.distributions.IntDistribution(
                    int(p.min), int(p.max), log=log_scale
                )
            else:
                out[name] = optuna.distributions.FloatDistribution(p.min, p.max, log=log_scale)
    return out


def _fixed(spec: SweepSpec) -> dict[str, Any]:
    return {n: p.value for n, p in spec.parameters.items() if p.value is not None}


def _sampler(spec: SweepSpec, sweep_id: int, number: int) -> optuna.samplers.BaseSampler:
    seed = sweep_id * 100_003 + number  # a fresh, reproducible stream per ask
    if spec.method == "grid":
        space = {n: p.values for n, p in spec.parameters.items() if p.values is not None}
        # The seed shuffles the grid and grid ids index it: one seed for the whole sweep.
        return optuna.samplers.GridSampler(space, seed=sweep_id)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, spec.run_cap // 4))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def _pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.early_terminate is None:
        return optuna.pruners.NopPruner()
    base = spec.base_spec()
    first_cut = spec.early_terminate.min_iter * base.eval_every  # in training steps
    eta = spec.early_terminate.eta
    if spec.early_terminate.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first_cut, reduction_factor=eta)
    return optuna.pruners.HyperbandPruner(
        min_resource=first_cut,
        max_resource=max(base.max_steps, first_cut),
        reduction_factor=eta,
    )


_STATES = {
    "running": optuna.trial.TrialState.RUNNING,
    "complete": optuna.trial.TrialState.COMPLETE,
    "pruned": optuna.trial.TrialState.PRUNED,
    "failed": optuna.trial.TrialState.FAIL,
}


def rebuild_study(sweep: Sweep, spec: SweepSpec, views: list[TrialView], trials: list[SweepTrial]):
    """An in-memory study holding every trial of `sweep`, numbered as stored."""
    direction = "minimize" if spec.metric.goal == "minimize" else "maximize"
    study = optuna.create_study(
        study_name=f"sweep-{sweep.id}",
        direction=direction,
        sampler=_sampler(spec, sweep.id, len(trials)),
        pruner=_pruner(spec),
    )
    dists = _distributions(spec)
    # Runs report their held-out NLL (lower is better); for a metric that is better higher
    # the pruner compares it negated, so it still cuts the trials that are behind.
    sign = 1.0 if direction == "minimize" else -1.0
    for view, row in zip(views, trials, strict=True):
        params = {k: v for k, v in view.params.items() if k in dists}
        study.add_trial(
            optuna.trial.create_trial(
                state=_STATES[view.state],
                value=view.value if view.state == "complete" else None,
                params=params,
                distributions={k: dists[k] for k in params},
                intermediate_values={k: sign * v for k, v in view.intermediate.items()},
                system_attrs=dict(row.system_attrs or {}),
            )
        )
    return study


# ----------------------------------------------------------------------------- state


def _lock(s: Session, sweep_id: int) -> Sweep:
    """The sweep row, locked for this transaction (an UPDATE takes the row lock on
    PostgreSQL and the write lock on SQLite): one decision at a time per sweep."""
    s.execute(update(Sweep).where(Sweep.id == sweep_id).values(status=Sweep.status))
    sweep = s.scalar(
        select(Sweep)
        .where(Sweep.id == sweep_id)
        .options(selectinload(Sweep.trials).selectinload(SweepTrial.runs))
    )
    if sweep is None:
        raise SweepNotFound(f"no sweep with id {sweep_id}")
    return sweep


def trial_cap(spec: SweepSpec) -> int:
    return min(spec.run_cap, grid_size(spec)) if spec.method == "grid" else spec.run_cap


def _out_of_budget(sweep: Sweep, spec: SweepSpec) -> bool:
    if spec.budget_minutes is None:
        return False
    return utcnow() - sweep.created_at > timedelta(minutes=spec.budget_minutes)


def create(spec: SweepSpec) -> tuple[int, list[int]]:
    """Store a sweep (its spec already validated) and its first trials, in one
    transaction: a refused source (`SpecError` naming the field) stores nothing.
    Returns the sweep's id and its first jobs' ids."""
    samples = spec.metric.samples
    if samples is not None and samples.judge.strip().lower() != NO_JUDGE:
        try:  # checked and stored as the worker loads it, once for every trial
            judge = submit.judge_source(samples.judge)
        except SpecError as exc:
            raise SpecError("metric.samples.judge", exc.message) from None
        spec = spec.model_copy(
            update={
                "metric": spec.metric.model_copy(
                    update={"samples": samples.model_copy(update={"judge": judge})}
                )
            }
        )
    with session_scope() as s:
        sweep = Sweep(name=spec.name, spec=spec.model_dump(mode="json"))
        s.add(sweep)
        s.flush()
        sweep_id = sweep.id
        new_jobs = _top_up(s, _lock(s, sweep_id))
    jobs.enqueue(new_jobs)
    return sweep_id, new_jobs


def top_up(sweep_id: int) -> list[int]:
    """Queue the sweep's next trials (`_top_up`); returns the new jobs' ids."""
    with session_scope() as s:
        new_jobs = _top_up(s, _lock(s, sweep_id))
    jobs.enqueue(new_jobs)
    return new_jobs


def _top_up(s: Session, sweep: Sweep) -> list[int]:
    """Ask Optuna for trials until `concurrency` run or the cap (or budget) is reached;
    mark the sweep finished when nothing is left to run."""
    spec = SweepSpec.model_validate(sweep.spec)
    trials = list(sweep.trials)
    new_jobs: list[int] = []
    if spec.metric.name in JUDGED_METRICS:  # judging goes on while a sweep is paused
        new_jobs += _judge_trials(s, spec, trials, sweep.status != SweepStatus.STOPPED)
    views = [trial_view(spec, t) for t in trials]
    active = sum(v.state == "running" for v in views)
    if sweep.status != SweepStatus.RUNNING:
        return new_jobs
    full = len(trials) >= trial_cap(spec) or _out_of_budget(sweep, spec)
    if full and active == 0:
        sweep.status, sweep.finished_at = SweepStatus.FINISHED, utcnow()
    while not full and active < spec.concurrency:
        trial = _ask(s, sweep, spec, views, trials)
        new_jobs += _queue_runs(s, sweep, spec, trial)
        trials.append(trial)
        views.append(trial_view(spec, trial))
        active += 1
        full = len(trials) >= trial_cap(spec)
    return new_jobs


def _ask(
    s: Session, sweep: Sweep, spec: SweepSpec, views: list[TrialView], trials: list[SweepTrial]
) -> SweepTrial:
    study = rebuild_study(sweep, spec, views, trials)
    asked = study.ask(_distributions(spec))
    frozen = study.trials[-1]
    trial = SweepTrial(
        sweep_id=sweep.id,
        number=frozen.number,
        params={**asked.params, **_fixed(spec)},
        system_attrs=dict(frozen.system_attrs),
        reports={},
    )
    s.add(trial)
    s.flush()
    return trial


def _judge_trials(
    s: Session, spec: SweepSpec, trials: list[SweepTrial], queue_new: bool
) -> list[int]:
    """For a judged metric: queue the sampling of every trained, unjudged trial run (not
    once the sweep is stopped: then it is marked unjudged), and read the sample sets of
    every sampling job that has ended into its run's summary."""
    new_jobs: list[int] = []
    for trial in trials:
        attrs = dict(trial.system_attrs or {})
        queued = {str(k): int(v) for k, v in (attrs.get(JUDGE_JOBS) or {}).items()}
        for run in trial.runs:
            if run.status != JobStatus.SUCCEEDED or "judged" in (run.summary or {}):
                continue
            job_id = queued.get(str(run.id))
            if job_id is None and not queue_new:
                judged = {"value": None, "reason": "the sweep was stopped before it sampled"}
            elif job_id is None:
                judged = _queue_judging(s, spec, run)
                if isinstance(judged, int):
                    queued[str(run.id)] = judged
                    new_jobs.append(judged)
                    continue
            else:
                job = s.get(Job, job_id)
                if job is not None and job.status in ACTIVE:
                    continue
                judged = _read_judging(s, spec, job, job_id)
            run.summary = {**(run.summary or {}), "judged": judged}
        if queued != (attrs.get(JUDGE_JOBS) or {}):
            trial.system_attrs = {**attrs, JUDGE_JOBS: queued}
    return new_jobs


def _queue_judging(s: Session, spec: SweepSpec, run: Run) -> int | dict[str, Any]:
    """The sampling job of a trained trial run (its id), or, when it cannot be queued, the
    run's `judged` summary saying why."""
    assert spec.metric.samples is not None
    if not run.checkpoints:
        return {"value": None, "reason": "the run saved no checkpoint to sample"}
    ckpt = run.checkpoints[-1]
    try:
        job = submit.add_generate(
            s,
            spec.metric.samples.generate_spec(ckpt.id),
            queue=spec.queue,
            priority=JUDGE_PRIORITY,
        )
    except SpecError as exc:  # e.g. the checkpoint's files are gone
        return {"value": None, "reason": f"could not sample checkpoint {ckpt.id}: {exc.message}"}
    return job.id


def _read_judging(s: Session, spec: SweepSpec, job: Job | None, job_id: int) -> dict[str, Any]:
    """A run's `judged` summary from its ended sampling job: the metric's value with the
    sets it was read from, or None and the reason."""
    if job is None or job.status != JobStatus.SUCCEEDED:
        status = "is gone" if job is None else str(JobStatus(job.status).value)
        why = (job.error or "").strip().splitlines()[-1:] if job is not None else []
        reason = f"its sampling job {job_id} {status}" + (f": {why[0]}" if why else "")
        return {"value": None, "job_id": job_id, "reason": reason}
    sets = s.scalars(
        select(SampleSet).where(SampleSet.job_id == job_id).order_by(SampleSet.combination)
    ).all()
    points = [
        {
            "sample_set_id": row.id,
            "temperature": row.settings.get("temperature"),
            "mauve": row.metrics.get("mauve"),
            "mauve_reason": row.metrics.get("mauve_reason"),
            "judge_ppl": row.metrics.get("judge_ppl"),
            "unigram_entropy": row.metrics.get("unigram_entropy"),
            "repetition": row.metrics.get("repetition"),
        }
        for row in sets
    ]
    human = None
    ref_ids = {row.metrics.get("human_reference_id") for row in sets} - {None}
    if spec.metric.name == "judge_ppl_matched" and ref_ids:
        ref = s.get(HumanReference, min(ref_ids))
        human = (ref.metrics or {}).get("unigram_entropy") if ref is not None else None
    value, reason = judged_value(spec.metric.name, points, human)
    return {"value": value, "reason": reason, "job_id": job_id, "points": points}


def judged_value(
    metric: str, points: list[dict[str, Any]], human_entropy: float | None
) -> tuple[float | None, str | None]:
    """A judged metric's value from one run's sample sets (`points`: one per temperature),
    or None and the reason. `mauve`: the best set's MAUVE (the temperature a user would
    sample at); `judge_ppl_matched`: the line's judge perplexity at human text's entropy."""
    if metric == "mauve":
        scores = [p["mauve"] for p in points if p.get("mauve") is not None]
        if not scores:
            why = next((p["mauve_reason"] for p in points if p.get("mauve_reason")), None)
            return None, "no sample set has a MAUVE score" + (f" ({why})" if why else "")
        return max(scores), None
    if human_entropy is None:
        return None, "no human reference was measured for this judge"
    line = [
        LinePoint(p["unigram_entropy"], p["judge_ppl"], p.get("repetition"), p.get("temperature"))
        for p in points
        if p.get("unigram_entropy") is not None and p.get("judge_ppl") is not None
    ]
    reading = matched_reading(line, human_entropy)
    return reading.judge_ppl, reading.reason


def _queue_runs(s: Session, sweep: Sweep, spec: SweepSpec, trial: SweepTrial) -> list[int]:
    ids = []
    for seed_index in range(spec.seeds):
        train = spec.trial_spec(trial.params, seed_index)
        suffix = f"-s{train.seed}" if spec.seeds > 1 else ""
        job = submit.add_train(
            s,
            train,
            name=f"{sweep.name} #{trial.number}{suffix}",
            tags=[f"sweep:{sweep.id}"],
            queue=spec.queue,
            sweep_trial_id=trial.id,
        )
        ids.append(job.id)
    s.refresh(trial, ["runs"])
    return ids


def report(run_id: int, step: int, value: float) -> bool:
    """Record run `run_id`'s metric at `step`; True if its trial is (now) pruned: the
    run should stop. Runs outside a sweep are never pruned."""
    with session_scope() as s:
        trial_id = s.scalar(select(Run.sweep_trial_id).where(Run.id == run_id))
        if trial_id is None:
            return False
        sweep_id = s.scalar(select(SweepTrial.sweep_id).where(SweepTrial.id == trial_id))
        sweep = _lock(s, sweep_id)
        spec = SweepSpec.model_validate(sweep.spec)
        trials = list(sweep.trials)
        trial = next(t for t in trials if t.id == trial_id)
        reports = {k: dict(v) for k, v in (trial.reports or {}).items()}
        reports.setdefault(str(run_id), {})[str(step)] = float(value)
        trial.reports = reports
        if (trial.system_attrs or {}).get(PRUNED_AT) is not None:
            return True
        if spec.early_terminate is None:
            return False
        views = [trial_view(spec, t) for t in trials]
        view = views[trial.number]
        if step not in view.intermediate:  # another seed has not reached this step yet
            return False
        study = rebuild_study(sweep, spec, views, trials)
        frozen = study.trials[trial.number]
        prune = study.pruner.prune(study, frozen)
        attrs = dict(study.trials[trial.number].system_attrs)
        if prune:
            attrs[PRUNED_AT] = step
            log.info("sweep %s: trial %s pruned at step %s", sweep.id, trial.number, step)
        trial.system_attrs = attrs
        return prune


def after_job(job_id: int) -> None:
    """A job ended: if it trained a trial's run, queue the sweep's next trials."""
    with session_scope() as s:
        sweep_id = s.scalar(
            select(SweepTrial.sweep_id)
            .join(Run, Run.sweep_trial_id == SweepTrial.id)
            .join(Job, Job.run_id == Run.id)
            .where(Job.id == job_id)
        )
    if sweep_id is not None:
        top_up(sweep_id)


def top_up_all() -> None:
    """Every running sweep topped up (the reconciler's safety net for a lost `after_run`)."""
    with session_scope() as s:
        ids = s.scalars(select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING)).all()
    for sweep_id in ids:
        try:
            top_up(sweep_id)
        except Exception:  # one bad sweep must not stop the others (or the reconciler)
            log.exception("sweep %s: top-up failed", sweep_id)


# ----------------------------------------------------------------------------- user actions


def _set_status(sweep_id: int, allowed: tuple[SweepStatus, ...], status: SweepStatus) -> Sweep:
    with session_scope() as s:
        sweep = _lock(s, sweep_id)
        if sweep.status == status:
            return sweep
        if sweep.status not in allowed:
            raise SweepError(f"sweep {sweep_id} is {sweep.status}; cannot make it {status}")
        sweep.status = status
        if status == SweepStatus.STOPPED:
            sweep.finished_at = utcnow()
        return sweep


def pause(sweep_id: int) -> None:
    _set_status(sweep_id, (SweepStatus.RUNNING,), SweepStatus.PAUSED)


def resume(sweep_id: int) -> None:
    _set_status(sweep_id, (SweepStatus.PAUSED,), SweepStatus.RUNNING)
    top_up(sweep_id)


def stop(sweep_id: int) -> None:
    """No new trials; every queued or running trial run is cancelled."""
    _set_status(sweep_id, (SweepStatus.RUNNING, SweepStatus.PAUSED), SweepStatus.STOPPED)
    for job_id in _active_jobs(sweep_id):
        jobs.cancel(job_id)
    top_up(sweep_id)  # a judged metric's cancelled sampling says so on its run


def extend(sweep_id: int, more_trials: int, parameters: dict[str, Parameter] | None = None):
    """Raise the trial cap by `more_trials` (and optionally widen the space); a finished
    sweep runs again. A wider space must still validate (`SweepSpec`)."""
    with session_scope() as s:
        sweep = _lock(s, sweep_id)
        if sweep.status == SweepStatus.STOPPED:
            raise SweepError(f"sweep {sweep_id} is stopped; create a new one")
        data = dict(sweep.spec)
        data["run_cap"] = int(data["run_cap"]) + more_trials
        if parameters:
            data["parameters"] = {
                **data["parameters"],
                **{k: v.model_dump(exclude_none=True) for k, v in parameters.items()},
            }
        sweep.spec = SweepSpec.model_validate(data).model_dump(mode="json")
        if sweep.status == SweepStatus.FINISHED:
            sweep.status, sweep.finished_at = SweepStatus.RUNNING, None
    top_up(sweep_id)


def retry_failed(sweep_id: int) -> list[int]:
    """Queue the failed runs of the sweep's failed trials again (same configuration); a
    trained run whose judging failed is judged again (a new sampling job)."""
    with session_scope() as s:
        sweep = _lock(s, sweep_id)
        failed = [
            job.id
            for trial in sweep.trials
            for run in trial.runs
            if run.status in (JobStatus.FAILED, JobStatus.CANCELLED)
            for job in run.jobs
        ]
        rejudge = []
        for trial in sweep.trials:
            for run in trial.runs:
                judged = (run.summary or {}).get("judged")
                if judged is not None and judged.get("value") is None:
                    run.summary = {k: v for k, v in run.summary.items() if k != "judged"}
                    attrs = dict(trial.system_attrs or {})
                    attrs[JUDGE_JOBS] = {
                        k: v for k, v in (attrs.get(JUDGE_JOBS) or {}).items() if k != str(run.id)
                    }
                    trial.system_attrs = attrs
                    rejudge.append(run.id)
        if sweep.status == SweepStatus.FINISHED and (failed or rejudge):
            sweep.status, sweep.finished_at = SweepStatus.RUNNING, None
    for job_id in failed:
        jobs.retry(job_id)
    if rejudge:
        top_up(sweep_id)
    return failed


def _active_jobs(sweep_id: int) -> list[int]:
    with session_scope() as s:
        sweep = _lock(s, sweep_id)
        return [
            job.id
            for trial in sweep.trials
            for run in trial.runs
            for job in run.jobs
            if job.status in ACTIVE
        ]


def export(sweep_id: int) -> dict[str, Any]:
    """The sweep's spec as a file would hold it (defaults left out)."""
    with session_scope() as s:
        sweep = s.get(Sweep, sweep_id)
        if sweep is None:
            raise SweepNotFound(f"no sweep with id {sweep_id}")
        spec = SweepSpec.model_validate(sweep.spec)
    return spec.model_dump(mode="json", exclude_defaults=True) | {"name": spec.name}
