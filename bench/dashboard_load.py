"""Dashboard latency on a large database: the runs page, the compare page, a sweep's page.

Two sizes (`--scale`), each seeded into a fresh database:

- `2k` (the default): `--runs` 2,000 runs x `--steps` 500 evaluation steps x 10 mask
  ratios (10M evaluation points), a loss point per evaluation step (1M), a checkpoint per
  run and sample sets on every 10th run.
- `20k` (issue 19): 20,000 runs, each with 500 loss points (`--loss-points`, one per
  training step) and 50 evaluations (`--steps`, every 10 steps) at 10 mask ratios (500
  evaluation points): 10M loss points and 10M evaluation points, the same checkpoints and
  sample sets, and two sweeps of 500 trials each (`--sweep-trials`) whose runs are the
  newest 1,000 (a trial's run ends where the trial did, so its points stop there too:
  fewer than 10M + 10M in all; the seed section of the results gives the exact counts).

It serves the app with gunicorn (werkzeug's threaded server if gunicorn is missing) in
its own process, and measures from a second process: our load client, `http.client` over
keep-alive connections, logged in with a session cookie like a browser.

    python bench/dashboard_load.py                         # 2k (minutes to seed)
    python bench/dashboard_load.py --runs 100 --steps 50   # a quick check
    python bench/dashboard_load.py --database-url postgresql://td:td@localhost/td_bench
    python bench/dashboard_load.py --scale 20k --database-url postgresql://...  # issue 19
    python bench/dashboard_load.py --scale 20k --runs 1000 --sweep-trials 500  # quick

Measured one request at a time, 200 each (`--requests`):
- 2k: p50/p95 of `/runs` (page 1, and a filtered, sorted page 3) and of the compare page
  with 2 to 8 random runs (`/compare?runs=...`, plus the `/api/compare` call its script
  makes, if it makes one); `/api/compare` alone too. Then `--concurrent-clients` clients
  (default 50, no pause between pages) load the same pages while two workers each train a
  tiny model on the same database, until both jobs end: p95 and errors. Goals:
  runs_p95_ms < 100, compare_p95_ms < 300. Written into bench/results/dashboard_load.json
  (dashboard_load_quick.json at other sizes) over the 2k keys; the 20k ones stay.
- 20k: `/runs` page 1 (and the filtered page, for reference), the compare page with 8
  random runs (plus its `/api/compare` call, if any), each sweep's page `/sweeps/<id>`
  (it embeds the sweep's data; its script fetches `/api/sweeps/<id>` again only every few
  seconds while the sweep runs, so that call is measured on its own); a sweep figure is
  the worse of the two sweeps'. No concurrent phase. Goals: runs_20k_list_p95_ms < 50,
  runs_20k_compare_p95_ms < 150, sweep_500_page_p95_ms < 150. Merged into
  bench/results/dashboard_load.json (the 2k keys stay; the details go under `runs_20k`),
  or dashboard_load_quick.json at other sizes.

`--database-url` must name an empty database; it is migrated, then filled. On PostgreSQL
the points go in by COPY (a 20M-row seed by executemany would take most of an hour on two
cores) and the database is vacuumed and analysed before measuring, as autovacuum would
leave a database at rest; SQLite gets executemany in chunks of 50k, as before.

Each sweep is made by the sweep code's own sampler (TPE) and pruner in one in-memory
Optuna study, over lr, warmup_steps and masking.mode, against a made-up response surface
(best near lr 3e-3): parameters, Optuna's system attributes (rungs, TPE's relative
parameters) and the reports per evaluation are what `shared.sweeps` would have stored.
Two sweeps because the page's cost depends on what the trials did: with the Hyperband
pruner (min_iter 1, eta 3) most trials are pruned after a few evaluations; without a
pruner (SweepSpec's default) most complete, each with 50 reports, and the page reads more.
In both the last 4 trials (their concurrency) are running and every 40th failed part way,
unless pruned first.

Why our own client and not locust: no extra dependency (locust brings gevent), a few
dozen lines whose timing we can read (request sent to body read, per request), and
exact percentiles rather than locust's rounded buckets.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _common import RESULTS, ROOT, command, cpu_flags, machine, write_result

PASSWORD = "bench-password-123"
GOALS = {"runs_p95_ms": 100.0, "compare_p95_ms": 300.0}
GOALS_20K = {
    "runs_20k_list_p95_ms": 50.0,
    "runs_20k_compare_p95_ms": 150.0,
    "sweep_500_page_p95_ms": 150.0,
}
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
EVAL_EVERY = 10  # steps between evaluations: step k*10 for k = 1..--steps
CHUNK = 50_000  # rows per executemany
COPY_ROWS = 5_000  # rows per block handed to COPY
SWEEP_CONCURRENCY = 4  # trials running at once: the last ones asked are still running
FAIL_EVERY = 40  # every 40th trial's run failed part way


@dataclass(frozen=True)
class Size:
    """What `seed` writes."""

    runs: int
    steps: int  # evaluations per run, every EVAL_EVERY training steps
    loss_points: int  # per run, evenly over its steps x EVAL_EVERY training steps
    sweep_trials: int  # per sweep (there are two); 0: no sweeps

    @property
    def trained(self) -> int:
        """Training steps of a whole run."""
        return self.steps * EVAL_EVERY


# The 2k size logs one loss point per evaluation step (`loss_points` None: = steps).
SCALES = {
    "2k": {"runs": 2000, "steps": 500, "loss_points": None, "sweep_trials": 0},
    "20k": {"runs": 20000, "steps": 50, "loss_points": 500, "sweep_trials": 500},
}


# ----------------------------------------------------------------------------- seeding


def _loss(ratio: float, step: int, offset: float) -> float:
    return 3.0 + 3.0 * ratio + 2.0 * math.exp(-step / 1500) + offset


def _nll(offset: float, step: int) -> float:
    """The midpoint integral of the loss curve: the run's bound, nats per token."""
    return sum(_loss(r, step, offset) for r in RATIOS) / len(RATIOS)


def _bound_summary(offset: float, step: int) -> dict[str, Any]:
    """What a run's summary holds after an evaluation at `step`."""
    bound = math.exp(_nll(offset, step))
    return {"ppl_bound": bound, "nll_bound": math.log(bound)}


def _insert(conn, table, rows, counts: dict[str, int]) -> None:
    """Executemany `rows` (an iterable of dicts) into `table` in chunks."""
    from sqlalchemy import insert

    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            conn.execute(insert(table), chunk)
            counts[table.name] = counts.get(table.name, 0) + len(chunk)
            chunk = []
    if chunk:
        conn.execute(insert(table), chunk)
        counts[table.name] = counts.get(table.name, 0) + len(chunk)


class _CopySource:
    """The file psycopg2's `copy_expert` reads: each read() makes the next block of rows as
    COPY text (tab-separated; repr keeps every float exact), so Python makes rows while
    PostgreSQL stores the last block."""

    def __init__(self, rows) -> None:
        self._rows = iter(rows)
        self.count = 0

    def read(self, size: int = -1) -> str:
        lines = ["\t".join(map(repr, row)) for row in itertools.islice(self._rows, COPY_ROWS)]
        self.count += len(lines)
        return "\n".join(lines) + "\n" if lines else ""


def _write_points(conn, table, columns: tuple[str, ...], rows, counts: dict[str, int]) -> None:
    """Tuples (`columns` in order, no None) into `table`: COPY on PostgreSQL, else
    executemany."""
    if conn.dialect.name != "postgresql":
        _insert(conn, table, (dict(zip(columns, row, strict=True)) for row in rows), counts)
        return
    source = _CopySource(rows)
    with conn.connection.cursor() as cursor:  # the DBAPI connection, in this transaction
        cursor.copy_expert(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN", source)
    counts[table.name] = counts.get(table.name, 0) + source.count


def _progress(runs: list[dict], desc: str):
    """`runs`, with a progress bar on stderr: the 20k seed takes minutes."""
    from tqdm import tqdm

    return tqdm(runs, desc=desc, unit="run", mininterval=2.0, file=sys.stderr)


EVAL_COLUMNS = ("run_id", "step", "ratio", "loss", "accuracy")
LOSS_COLUMNS = ("run_id", "step", "loss", "mask_ratio", "lr", "tokens_seen", "elapsed_s")


def _eval_rows(runs: list[dict]):
    """Every evaluation of every run, up to the step it reached."""
    for r in _progress(runs, "eval_points"):
        for k in range(1, r["step"] // EVAL_EVERY + 1):
            step = k * EVAL_EVERY
            for ratio in RATIOS:
                loss = _loss(ratio, step, r["_offset"])
                yield (r["id"], step, ratio, loss, max(0.0, 0.6 - ratio / 2))


def _loss_rows(runs: list[dict], size: Size):
    """`size.loss_points` per whole run, evenly spaced; a run stopped early has those
    up to the step it reached."""
    for r in _progress(runs, "loss_points"):
        for k in range(1, size.loss_points + 1):
            step = k * size.trained // size.loss_points
            if step > r["step"]:
                break
            loss = _loss(0.5, step, r["_offset"])
            yield (r["id"], step, loss, 0.5, 3e-4, step * 1024, step * 0.5)


def _job_for(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The run's training job, in the run's state."""
    status = run["status"]
    return {
        "id": run["id"],
        "kind": "train",
        "status": status,
        "run_id": run["id"],
        "spec": run["spec"],
        "attempts": 1,
        "max_attempts": 3,
        "priority": 0,
        # "Running" on GPU machines that are not part of the benchmark: the benchmark's
        # workers (cpu queue) must not pick them up when their heartbeats go stale and the
        # reconciler queues them again.
        "queue": "gpu" if status == "running" else "cpu",
        "cancel_requested": False,
        "progress": run["step"] / run["max_steps"],
        "created_at": run["created_at"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "heartbeat_at": None if run["finished_at"] else now,
        "error": "RuntimeError: out of memory" if status == "failed" else None,
    }


def _plain_runs(size: Size, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    """Runs queued by hand: every one has all its evaluations (a running run is half way
    through a schedule twice as long)."""
    from shared.contracts.specs import TrainSpec

    specs = {
        p: TrainSpec.from_preset(p, max_steps=size.trained).model_dump(mode="json")
        for p in ("minilm", "tiny")
    }
    statuses = ["succeeded"] * 16 + ["failed", "failed", "cancelled", "running"]
    runs = []
    for i in range(1, size.runs - len(SWEEPS) * size.sweep_trials + 1):
        preset = "minilm" if i % 3 else "tiny"
        status = statuses[i % len(statuses)]
        offset = rng.random()
        spec = {**specs[preset], "lr": rng.choice([1e-4, 3e-4, 1e-3]), "seed": i}
        created = now - timedelta(minutes=10 * (size.runs - i))
        runs.append(
            {
                "id": i,
                "name": f"run-{i:05d} {preset} lr={spec['lr']:g}",
                "preset": preset,
                "tags": ["sweep"] if i % 4 == 0 else [],
                "spec": spec,
                "status": status,
                "created_at": created,
                "started_at": created + timedelta(seconds=5),
                "finished_at": None if status == "running" else created + timedelta(minutes=9),
                "summary": _bound_summary(offset, size.trained) if status == "succeeded" else {},
                "step": size.trained,
                "max_steps": size.trained * (2 if status == "running" else 1),
                "tokens_seen": size.trained * 1024,
                "sweep_trial_id": None,
                "_offset": offset,
            }
        )
    return runs


# ----------------------------------------------------------------------------- the sweeps


# The two sweeps, by id: the Hyperband pruner stops most trials early (short reports, few
# complete trials), while without a pruner (SweepSpec's default) most trials complete,
# each with a report per evaluation: the heavier page.
SWEEPS = {
    1: ("hyperband", {"type": "hyperband", "min_iter": 1, "eta": 3}),
    2: ("unpruned", None),
}


def _sweep_spec(size: Size, name: str, early_terminate: dict | None):
    from shared.contracts.sweep import SweepSpec

    return SweepSpec.model_validate(
        {
            "name": f"bench-{name}-{size.sweep_trials}",
            "base": {"preset": "tiny", "max_steps": size.trained, "eval_every": EVAL_EVERY},
            "method": "tpe",
            "metric": {"name": "val_nll", "goal": "minimize"},
            "parameters": {
                "lr": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"},
                "warmup_steps": {"values": [0, 10, 50]},
                "masking.mode": {"values": ["uniform", "grid"]},
            },
            "run_cap": size.sweep_trials,
            "concurrency": SWEEP_CONCURRENCY,
            "seeds": 1,
            "early_terminate": early_terminate,
        }
    )


def _offset(params: dict[str, Any], rng: random.Random) -> float:
    """A made-up response surface: best at lr 10^-2.5, a little worse with long warmup or
    grid masking, plus noise per trial."""
    lr_term = 0.25 * (math.log10(params["lr"]) + 2.5) ** 2
    extra = 0.03 * (params["warmup_steps"] == 50) + 0.02 * (params["masking.mode"] == "grid")
    return 0.2 + lr_term + extra + rng.gauss(0.0, 0.03)


def _simulate_sweep(spec, sweep_id: int, size: Size, rng: random.Random) -> list[dict]:
    """Each trial as `shared.sweeps` would have left it: asked, its run's evaluations
    reported until the pruner (if any) stopped it, told. The sweep code's own sampler,
    pruner and distributions, one in-memory study (the real code rebuilds it per decision:
    the same decisions, a 500-trial sweep in seconds instead of hours)."""
    import optuna

    from shared import sweeps

    study = optuna.create_study(
        study_name=f"sweep-{sweep_id}",
        direction="minimize",
        sampler=sweeps._sampler(spec, sweep_id, 0),
        pruner=sweeps._pruner(spec),
    )
    dists = sweeps._distributions(spec)
    out = []
    for number in range(size.sweep_trials):
        trial = study.ask(dists)
        offset = _offset(trial.params, rng)
        running = number >= size.sweep_trials - SWEEP_CONCURRENCY
        failed = not running and number % FAIL_EVERY == FAIL_EVERY - 1
        evals = rng.randint(1, max(1, size.steps - 1)) if running or failed else size.steps
        reports, state = {}, "running" if running else "failed" if failed else "complete"
        for k in range(1, evals + 1):
            step = k * EVAL_EVERY
            reports[step] = _bound_summary(offset, step)["nll_bound"]
            trial.report(reports[step], step)
            if trial.should_prune():
                state = "pruned"
                break
        if state != "running":
            value = reports[step] if state == "complete" else None
            study.tell(trial, value, state=optuna.trial.TrialState[_TELL[state]])
        attrs = dict(study.trials[number].system_attrs)
        if state == "pruned":
            attrs[sweeps.PRUNED_AT] = step
        params = {**trial.params, **sweeps._fixed(spec)}
        out.append(
            {"number": number, "params": params, "attrs": attrs, "state": state}
            | {"reports": reports, "step": step, "offset": offset}
        )
    return out


_TELL = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
_RUN_STATUS = {"complete": "succeeded", "pruned": "pruned", "running": "running"}


def _sweep_rows(size: Size, rng: random.Random, now: datetime):
    """(the sweeps' rows, their trials' rows, the trials' runs). The sweeps' runs are the
    newest 2 x `size.sweep_trials` runs, the first sweep's before the second's."""
    sweeps, trials, runs = [], [], []
    first_run = size.runs - len(SWEEPS) * size.sweep_trials + 1
    for sweep_id, (name, early_terminate) in SWEEPS.items():
        spec = _sweep_spec(size, name, early_terminate)
        first_trial = (sweep_id - 1) * size.sweep_trials + 1
        for t in _simulate_sweep(spec, sweep_id, size, rng):
            run_id = first_run + len(runs)
            trial_id = first_trial + t["number"]
            created = now - timedelta(minutes=10 * (size.runs - run_id))
            trials.append(
                {
                    "id": trial_id,
                    "sweep_id": sweep_id,
                    "number": t["number"],
                    "params": t["params"],
                    "system_attrs": t["attrs"],
                    "reports": {str(run_id): {str(s): v for s, v in t["reports"].items()}},
                    "created_at": created,
                }
            )
            runs.append(_trial_run(spec, sweep_id, t, run_id, trial_id, created))
        sweeps.append(
            {
                "id": sweep_id,
                "name": spec.name,
                "spec": spec.model_dump(mode="json"),
                "status": "running",
                "created_at": runs[-size.sweep_trials]["created_at"] - timedelta(minutes=1),
                "finished_at": None,
            }
        )
    return sweeps, trials, runs


def _trial_run(spec, sweep_id: int, trial: dict, run_id: int, trial_id: int, created: datetime):
    """A trial's run as `shared.submit.add_train` stores it, in the state it ended in (the
    summary holds the bound of its last evaluation, as the worker writes it)."""
    status = _RUN_STATUS.get(trial["state"], "failed")
    step = trial["step"]
    train = spec.trial_spec(trial["params"], 0).model_dump(mode="json")
    return {
        "id": run_id,
        "name": f"{spec.name} #{trial['number']}",
        "preset": train["preset"],
        "tags": [f"sweep:{sweep_id}"],
        "spec": train,
        "status": status,
        "created_at": created,
        "started_at": created + timedelta(seconds=5),
        "finished_at": None if status == "running" else created + timedelta(minutes=9),
        "summary": {"bound_step": step, **_bound_summary(trial["offset"], step)},
        "step": step,
        "max_steps": spec.base_spec().max_steps,
        "tokens_seen": step * 1024,
        "sweep_trial_id": trial_id,
        "_offset": trial["offset"],
    }


# ----------------------------------------------------------------------------- seed


def _checkpoints_and_samples(runs: list[dict], rng: random.Random, now: datetime):
    """A checkpoint per run; every 10th run gets a sample set: 4 samples with the same
    prompts, seeds and settings everywhere, so the compare page pairs them."""
    ckpts = [
        {
            "id": r["id"],
            "run_id": r["id"],
            "step": r["step"],
            "url": f"file:///bench/run-{r['id']}",
            "metrics": {},
            "created_at": now,
        }
        for r in runs
    ]
    settings = {"schedule": "linear", "sampling": "topk", "temperature": 0.7, "steps": 10}
    sets = [
        {
            "id": r["id"],
            "job_id": None,
            "checkpoint_id": r["id"],
            "combination": 0,
            "settings": {**settings, "seed": 0},
            "metrics": {"distinct_2": 0.5, "max_token_share": 0.2},
            "created_at": now,
        }
        for r in runs
        if r["id"] % 10 == 0
    ]
    words = ["and", "the", "lord", "said", "unto", "moses", "god", "created", "heaven"]
    samples = [
        {
            "sample_set_id": ss["id"],
            "position": j,
            "prompt": "In the beginning",
            "text": "In the beginning " + " ".join(rng.choice(words) for _ in range(30)),
            "seed": j,
            "trajectory": None,
            "metrics": {},
        }
        for ss in sets
        for j in range(4)
    ]
    return ckpts, sets, samples


def _vacuum_analyze() -> None:
    """Visibility map and statistics, as autovacuum leaves a database at rest (COPY leaves
    neither: index-only scans would visit the heap, plans would guess row counts)."""
    from shared.db import get_engine

    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE)")


def _trial_states(trials: list[dict], runs: list[dict]) -> dict[str, dict[str, int]]:
    """Per sweep, its trials' runs by status: what the pruner made of it."""
    sweep_of = {t["id"]: SWEEPS[t["sweep_id"]][0] for t in trials}
    out: dict[str, dict[str, int]] = {name: {} for name, _ in SWEEPS.values()}
    for r in runs:
        if r["sweep_trial_id"] is not None:
            states = out[sweep_of[r["sweep_trial_id"]]]
            states[r["status"]] = states.get(r["status"], 0) + 1
    return out


def seed(size: Size) -> dict[str, Any]:
    """Fill the (empty, migrated) database at DATABASE_URL; returns counts and timings."""
    from shared.db import get_engine
    from shared.models import (
        Checkpoint,
        EvalPoint,
        Job,
        LossPoint,
        Run,
        Sample,
        SampleSet,
        Sweep,
        SweepTrial,
    )

    rng = random.Random(0)
    now = datetime.now(UTC)
    runs = _plain_runs(size, rng, now)
    sweeps, trials = [], []
    if size.sweep_trials:
        sweeps, trials, trial_runs = _sweep_rows(size, random.Random(1), now)
        runs += trial_runs
    jobs = [_job_for(r, now) for r in runs]
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    t_all = time.perf_counter()
    with get_engine().begin() as conn:
        t = time.perf_counter()
        postgres = conn.dialect.name == "postgresql"
        if sweeps:
            _insert(conn, Sweep.__table__, sweeps, counts)
            _insert(conn, SweepTrial.__table__, trials, counts)
        plain = [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]
        _insert(conn, Run.__table__, plain, counts)
        _insert(conn, Job.__table__, jobs, counts)
        ckpts, sets, samples = _checkpoints_and_samples(runs, rng, now)
        _insert(conn, Checkpoint.__table__, ckpts, counts)
        _insert(conn, SampleSet.__table__, sets, counts)
        _insert(conn, Sample.__table__, samples, counts)
        timings["runs_jobs_checkpoints_samples_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _write_points(conn, EvalPoint.__table__, EVAL_COLUMNS, _eval_rows(runs), counts)
        timings["eval_points_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _write_points(conn, LossPoint.__table__, LOSS_COLUMNS, _loss_rows(runs, size), counts)
        timings["loss_points_s"] = time.perf_counter() - t
        if postgres:  # explicit ids: move the sequences past them
            tables = ["runs", "jobs", "checkpoints", "sample_sets"]
            tables += ["sweeps", "sweep_trials"] if sweeps else []
            for table in tables:
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
    timings["total_s"] = time.perf_counter() - t_all
    if postgres:
        t = time.perf_counter()
        _vacuum_analyze()
        timings["vacuum_analyze_s"] = time.perf_counter() - t
    points = counts["eval_points"] + counts["loss_points"]
    point_s = timings["eval_points_s"] + timings["loss_points_s"]
    filtered = sum(1 for r in runs if r["status"] == "succeeded" and r["preset"] == "minilm")
    return {
        "runs": size.runs,
        "eval_steps_per_run": size.steps,
        "ratios": len(RATIOS),
        "loss_points_per_run": size.loss_points,
        "trials_per_sweep": size.sweep_trials,
        "points_written_by": "COPY" if postgres else "executemany",
        "rows": counts,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "rows_per_s": round(sum(counts.values()) / timings["total_s"]),
        "points_rows_per_s": round(points / point_s),
        **({"sweep_trial_runs_by_status": _trial_states(trials, runs)} if trials else {}),
        "succeeded_ids": [r["id"] for r in runs if r["status"] == "succeeded"],
        "sweep_ids": {name: sweep_id for sweep_id, (name, _) in SWEEPS.items()},
        # The filtered scenario's page: the third, or the last if there are fewer.
        "filtered_page": min(3, max(1, math.ceil(filtered / 50))),
    }


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, workers: int, threads: int, log: Path):
    """gunicorn (gthread) serving `web:create_app()`, or werkzeug's threaded server."""
    import importlib.util

    if importlib.util.find_spec("gunicorn") is not None:
        argv = [sys.executable, "-m", "gunicorn", "web:create_app()", "-b", f"127.0.0.1:{port}"]
        argv += ["-w", str(workers), "-k", "gthread", "--threads", str(threads)]
        argv += ["--keep-alive", "30", "--log-level", "warning"]
        kind = {"server": "gunicorn", "workers": workers, "threads": threads}
    else:
        code = (
            "from werkzeug.serving import run_simple; from web import create_app; "
            f"run_simple('127.0.0.1', {port}, create_app(), threaded=True)"
        )
        argv = [sys.executable, "-c", code]
        kind = {"server": "werkzeug (threaded)", "workers": 1, "threads": None}
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc, kind
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start; see {log}")
        time.sleep(0.2)


# ----------------------------------------------------------------------------- client


class Browser:
    """One keep-alive connection with a session cookie (shared by the client's threads)."""

    def __init__(self, port: int, cookie: str | None = None) -> None:
        self.port = port
        self.cookie = cookie
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: str | None = None, headers=None):
        """(status, body text, seconds); reconnects once if the server closed the socket."""
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        for attempt in (0, 1):
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                text = response.read().decode("utf-8", "replace")
                elapsed = time.perf_counter() - t0
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("session="):
                self.cookie = value.split(";", 1)[0]
        return response.status, text, elapsed

    def login(self, password: str) -> None:
        _, html, _ = self.request("GET", "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        form = urlencode({"username": "admin", "password": password, "csrf_token": token})
        status, _, _ = self.request(
            "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 302:
            raise RuntimeError(f"login failed: HTTP {status}")


def _percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0}
    ordered = sorted(ms)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)], 1)

    return {
        "n": len(ms),
        "p50_ms": q(0.50),
        "p95_ms": q(0.95),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def _requests(plan: dict[str, Any], rng: random.Random) -> tuple[str, list[str]]:
    """One user action: (scenario, the paths it loads in order)."""
    scenario = rng.choice(plan["scenarios"])
    if scenario == "runs_page1":
        return scenario, ["/runs"]
    if scenario == "runs_filtered":
        page = plan["filtered_page"]
        return scenario, [f"/runs?status=succeeded&preset=minilm&sort=bound&order=asc&page={page}"]
    if scenario.startswith(("sweep_page:", "sweep_api:")):
        kind, name = scenario.split(":")
        prefix = "/sweeps/" if kind == "sweep_page" else "/api/sweeps/"
        return scenario, [f"{prefix}{plan['sweep_ids'][name]}"]
    n = 8 if scenario == "compare8" else rng.randint(2, 8)
    ids = ",".join(str(i) for i in rng.sample(plan["run_ids"], n))
    if scenario == "compare_api":
        return scenario, [f"/api/compare?runs={ids}"]
    paths = [f"/compare?runs={ids}"]
    if plan["compare_uses_api"]:
        paths.append(f"/api/compare?runs={ids}")
    return scenario, paths  # compare (2 to 8 runs) or compare8


def client_main(plan_path: str) -> None:
    """The load process: reads a plan (JSON), prints the latencies it measured (JSON)."""
    plan = json.loads(Path(plan_path).read_text())
    port = plan["port"]
    first = Browser(port)
    first.login(plan["password"])
    _, html, _ = first.request("GET", "/compare?runs=" + ",".join(map(str, plan["run_ids"][:2])))
    plan["compare_uses_api"] = "/api/compare" in html
    lock = threading.Lock()
    results: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    deadline = time.monotonic() + plan.get("seconds", 1e9)
    stop = Path(plan["stop_file"]) if plan.get("stop_file") else None
    per_client = plan["actions"] // plan["clients"] if plan["actions"] else None

    def user(n: int) -> None:
        rng = random.Random(n)
        browser = Browser(port, first.cookie)
        done = 0
        for _ in range(plan["warmup"]):
            for path in _requests(plan, rng)[1]:
                browser.request("GET", path)
        while (
            (per_client is None or done < per_client)
            and time.monotonic() < deadline
            and not (stop and stop.exists())
        ):
            scenario, paths = _requests(plan, rng)
            total, failed = 0.0, False
            for path in paths:
                try:
                    status, _, elapsed = browser.request("GET", path)
                except (OSError, http.client.HTTPException):
                    status, elapsed = 599, 0.0
                total += elapsed
                failed |= status != 200
            with lock:
                if failed:
                    errors[scenario] = errors.get(scenario, 0) + 1
                else:
                    results.setdefault(scenario, []).append(total * 1000)
            done += 1
            time.sleep(plan.get("think_s", 0.0))

    threads = [threading.Thread(target=user, args=(n,)) for n in range(plan["clients"])]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "compare_uses_api": plan["compare_uses_api"],
                "latencies_ms": results,
                "errors": errors,
            }
        )
    )


def run_client(plan: dict[str, Any], tmp: Path, until=None) -> dict[str, Any]:
    """Run the load client in its own process and summarise what it measured. With
    `until` (a function), the load stops once it returns True (or at plan["seconds"])."""
    path = tmp / f"plan-{time.monotonic_ns()}.json"
    stop = tmp / f"stop-{time.monotonic_ns()}"
    path.write_text(json.dumps({**plan, "stop_file": str(stop)}))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--client", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if until is not None:
        while proc.poll() is None and not until():
            time.sleep(0.5)
        stop.touch()
    stdout, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"the load client failed (exit {proc.returncode})")
    raw = json.loads(stdout)
    every = [x for values in raw["latencies_ms"].values() for x in values]
    return {
        "clients": plan["clients"],
        "seconds": round(raw["seconds"], 1),
        "compare_uses_api": raw["compare_uses_api"],
        "by_scenario": {k: _percentiles(v) for k, v in sorted(raw["latencies_ms"].items())},
        "all": _percentiles(every),
        "errors": sum(raw["errors"].values()),
        "errors_by_scenario": raw["errors"],
        "actions_per_s": round((len(every) + sum(raw["errors"].values())) / raw["seconds"], 1),
    }


# ----------------------------------------------------------------------------- training


def train_while(env_dir: Path, steps: int):
    """Start two workers on this database and submit 2 tiny training jobs; returns
    (JobSystem, job ids). The jobs write losses to the same database the pages read."""
    from _jobs_env import JobSystem, tiny_train_spec

    from shared import job_reads, submit
    from shared.models import JobStatus

    system = JobSystem(env_dir, dict(os.environ))
    try:
        system.start_workers(2, threads=1)  # one job each, so both train at once
        spec = tiny_train_spec(env_dir, steps, log_every=1, eval_every=max(1, steps // 4))
        ids = [submit.submit_train(spec, name=f"load-{i}").id for i in range(2)]
        deadline = time.monotonic() + 180
        while any(job_reads.get_job(i).status == JobStatus.QUEUED for i in ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the training jobs did not start; see {env_dir}/worker-*.log")
            time.sleep(0.2)
    except BaseException:
        system.stop_workers()
        raise
    return system, ids


# ----------------------------------------------------------------------------- measuring


SWEEP_KINDS = ("sweep_page", "sweep_api")  # the page, and its script's poll alone
PHASES = {
    "2k": [
        ("runs", ["runs_page1", "runs_filtered"]),
        ("compare", ["compare"]),
        ("compare_api", ["compare_api"]),
    ],
    "20k": [
        ("runs", ["runs_page1", "runs_filtered"]),
        ("compare8", ["compare8"]),
        ("sweep", [f"{kind}:{name}" for name, _ in SWEEPS.values() for kind in SWEEP_KINDS]),
    ],
}


def sequential(plan: dict[str, Any], phases, requests: int, tmp: Path) -> dict[str, Any]:
    """Each phase's scenarios, one request at a time (about `requests` each); raises if
    any request failed."""
    result: dict[str, Any] = {}
    for name, scenarios in phases:
        measured = run_client(
            {**plan, "scenarios": scenarios, "clients": 1, "actions": requests * len(scenarios)},
            tmp,
        )
        result[name] = measured
        print(f"{name}: {json.dumps(measured['by_scenario'])}")
    failed = {k: v["errors_by_scenario"] for k, v in result.items() if v["errors"]}
    if failed:
        raise RuntimeError(f"requests failed: {failed}; see {tmp / 'server.log'}")
    return result


def concurrent_load(plan: dict[str, Any], args: argparse.Namespace, tmp: Path) -> dict:
    """`--concurrent-clients` clients on the 2k pages while two jobs train, until both end."""
    from shared import job_reads, jobs
    from shared.models import JobStatus

    system, job_ids = train_while(tmp, args.train_steps)

    def trained() -> bool:
        return all(JobStatus(job_reads.get_job(i).status).finished for i in job_ids)

    try:
        concurrent = run_client(
            {
                **plan,
                "scenarios": ["runs_page1", "runs_filtered", "compare"],
                "clients": args.concurrent_clients,
                "actions": 0,
                "seconds": args.concurrent_seconds,
                "think_s": args.think_ms / 1000,
                "warmup": 1,
            },
            tmp,
            until=trained,
        )
        concurrent["think_ms"] = args.think_ms
        concurrent["training_jobs"] = [
            {
                "id": j.id,
                "status_after_load": str(j.status),
                "progress_after_load": round(j.progress, 3),
                "error": j.error,
            }
            for j in (job_reads.get_job(i) for i in job_ids)
        ]
        concurrent["p95_ms"] = concurrent["all"]["p95_ms"]
        for i in job_ids:
            jobs.cancel(i)
    finally:
        system.stop_workers()
    print(f"concurrent: {json.dumps(concurrent)}")
    return concurrent


# ----------------------------------------------------------------------------- results


def _summary_2k(result: dict[str, Any]) -> dict[str, float]:
    runs_ms = [result["runs"]["by_scenario"][s] for s in ("runs_page1", "runs_filtered")]
    compare = result["compare"]["by_scenario"]["compare"]
    return {
        "runs_p95_ms": max(x["p95_ms"] for x in runs_ms),
        "runs_p50_ms": max(x["p50_ms"] for x in runs_ms),
        "compare_p95_ms": compare["p95_ms"],
        "compare_p50_ms": compare["p50_ms"],
        "compare_api_p95_ms": result["compare_api"]["by_scenario"]["compare_api"]["p95_ms"],
    }


def _summary_20k(result: dict[str, Any]) -> dict[str, float]:
    """The figures; a sweep's is the worse of the two sweeps'."""
    by = {k: v for phase in result.values() for k, v in phase["by_scenario"].items()}

    def sweep(kind: str, q: str) -> float:
        return max(by[f"{kind}:{name}"][q] for name, _ in SWEEPS.values())

    return {
        "runs_20k_list_p95_ms": by["runs_page1"]["p95_ms"],
        "runs_20k_list_p50_ms": by["runs_page1"]["p50_ms"],
        "runs_20k_compare_p95_ms": by["compare8"]["p95_ms"],
        "runs_20k_compare_p50_ms": by["compare8"]["p50_ms"],
        "sweep_500_page_p95_ms": sweep("sweep_page", "p95_ms"),
        "sweep_500_page_p50_ms": sweep("sweep_page", "p50_ms"),
        # For reference, no goal: the filtered, bound-sorted runs page and the sweep's poll.
        "runs_20k_filtered_p95_ms": by["runs_filtered"]["p95_ms"],
        "sweep_500_api_p95_ms": sweep("sweep_api", "p95_ms"),
    }


def _stamp() -> dict[str, Any]:
    return {"command": command(), "date": datetime.now(UTC).strftime("%Y-%m-%d")}


def _merge(scale: str, size: Size, payload: dict[str, Any]) -> Path:
    """Write `payload`'s keys over bench/results/dashboard_load.json (at the scale's own
    size; dashboard_load_quick.json at any other), keeping the other scale's keys."""
    name = "dashboard_load" if size == scale_size(scale) else "dashboard_load_quick"
    path = RESULTS / f"{name}.json"
    before = json.loads(path.read_text()) if path.exists() else {}
    return write_result(name, before | payload)


def write_2k(size: Size, result, report: dict[str, Any], concurrent) -> Path:
    summary = _summary_2k(result)
    payload = {
        **summary,
        "goals": GOALS,
        "met": {k: summary[k] < v for k, v in GOALS.items()},
        **report,
        "concurrent": concurrent,
        **_stamp(),
        "machine": machine(),
    }
    print(json.dumps({k: payload[k] for k in (*summary, "met")}, indent=2))
    return _merge("2k", size, payload)


def write_20k(size: Size, result, report: dict[str, Any]) -> Path:
    """The figures at the top, beside the 2k ones; the rest under `runs_20k`."""
    summary = _summary_20k(result)
    section = {
        "goals": GOALS_20K,
        "met": {k: summary[k] < v for k, v in GOALS_20K.items()},
        **report,
        **_stamp(),
        "machine": {**machine(), "cpu_flags": cpu_flags()},
    }
    print(json.dumps({**summary, "met": section["met"]}, indent=2))
    return _merge("20k", size, {**summary, "runs_20k": section})


# ----------------------------------------------------------------------------- main


def scale_size(scale: str, **given: int | None) -> Size:
    """A scale's size, with any of its numbers `given` (None: the scale's)."""
    chosen = {k: v if given.get(k) is None else given[k] for k, v in SCALES[scale].items()}
    if chosen["loss_points"] is None:
        chosen["loss_points"] = chosen["steps"]
    return Size(**chosen)


def parse_args() -> tuple[argparse.Namespace, Size]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="2k", help="see above")
    parser.add_argument("--runs", type=int, help="2k: 2000, 20k: 20000")
    parser.add_argument("--steps", type=int, help="evaluations per run (2k: 500, 20k: 50)")
    parser.add_argument(
        "--loss-points", type=int, help="per run (2k: one per evaluation step, 20k: 500)"
    )
    parser.add_argument("--sweep-trials", type=int, help="per sweep, 20k only (500)")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--requests", type=int, default=200, help="per scenario, one at a time")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn's")
    parser.add_argument("--threads", type=int, default=4, help="per gunicorn worker")
    parser.add_argument("--concurrent-clients", type=int, default=50)
    parser.add_argument(
        "--concurrent-seconds",
        type=float,
        default=300.0,
        help="the most the concurrent load lasts; it ends when both training jobs end",
    )
    parser.add_argument("--train-steps", type=int, default=1000, help="each training job's")
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="each concurrent client's pause per page"
    )
    parser.add_argument("--skip-concurrent", action="store_true", help="2k (20k never loads)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return args, scale_size("2k")
    if args.scale == "2k" and args.sweep_trials:
        parser.error("--sweep-trials goes with --scale 20k (the 2k scenarios show no sweep)")
    size = scale_size(
        args.scale,
        runs=args.runs,
        steps=args.steps,
        loss_points=args.loss_points,
        sweep_trials=args.sweep_trials,
    )
    if min(size.runs, size.steps, size.loss_points) < 1:
        parser.error("--runs, --steps and --loss-points must be at least 1")
    if size.loss_points > size.trained:
        parser.error(f"--loss-points: at most one per training step ({size.trained})")
    most = size.runs // len(SWEEPS)
    if args.scale == "20k" and not 1 <= size.sweep_trials <= most:
        parser.error(f"--sweep-trials: from 1 to --runs / {len(SWEEPS)} ({most}), per sweep")
    return args, size


def main() -> None:
    args, size = parse_args()
    if args.client:
        client_main(args.client)
        return

    with tempfile.TemporaryDirectory(prefix="td-dashload-") as tmp_name:
        tmp = Path(tmp_name)
        env = {
            "DATA_DIR": str(tmp),
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'td.db'}",
            "REDIS_URL": "",
            "ADMIN_PASSWORD": PASSWORD,
            "SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "HEARTBEAT_SECONDS": "1",
        }
        os.environ.update(env)
        from shared import db
        from shared.settings import get_settings

        get_settings.cache_clear()
        db.dispose_engines()
        db.upgrade()
        sweeps = f", {len(SWEEPS)} sweeps of {size.sweep_trials} trials each"
        sweeps = sweeps if size.sweep_trials else ""
        print(
            f"seeding {size.runs} runs x {size.steps} evaluations x {len(RATIOS)} ratios, "
            f"{size.loss_points} loss points per run{sweeps} ..."
        )
        seeded = seed(size)
        print(
            f"seeded {sum(seeded['rows'].values()):,} rows in {seeded['seconds']['total_s']} s "
            f"({seeded['rows_per_s']:,} rows/s; points by {seeded['points_written_by']}: "
            f"{seeded['points_rows_per_s']:,} rows/s): {seeded['rows']}; "
            f"seconds: {seeded['seconds']}"
        )
        db_file = tmp / "td.db"
        if db_file.exists():
            seeded["sqlite_bytes"] = db_file.stat().st_size + sum(
                p.stat().st_size for p in tmp.glob("td.db-*")
            )
        port = free_port()
        server, server_kind = start_server(
            {**os.environ}, port, args.workers, args.threads, tmp / "server.log"
        )
        plan = {
            "port": port,
            "password": PASSWORD,
            "run_ids": seeded.pop("succeeded_ids"),
            "sweep_ids": seeded.pop("sweep_ids"),
            "filtered_page": seeded["filtered_page"],
            "warmup": 5,
        }
        try:
            result = sequential(plan, PHASES[args.scale], args.requests, tmp)
            concurrent = None
            if args.scale == "2k" and not args.skip_concurrent:
                concurrent = concurrent_load(plan, args, tmp)
        finally:
            server.terminate()
            server.wait(30)

        report = {
            "database": "postgresql" if env["DATABASE_URL"].startswith("postgres") else "sqlite",
            "server": server_kind,
            "seed": seeded,
            "sequential": result,
        }
        if args.scale == "20k":
            path = write_20k(size, result, report)
        else:
            path = write_2k(size, result, report, concurrent)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
