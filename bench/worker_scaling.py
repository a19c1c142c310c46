"""Throughput of many small generation jobs with 1, 2 and 4 worker processes, and what
each job costs the shared services (Redis commands, database writes).

Each worker runs one job at a time (`--concurrency 1`) with one compute thread
(OMP_NUM_THREADS=1, so torch uses one). Every run uses the same tiny checkpoint; each job
generates 2 samples of 16 tokens. Before timing, every worker runs one job, so what is
timed is the steady state (a worker's first job also waits for its warm process).

Measured per run:

- jobs/s from the first submit to the last job's end; the median job time (claim to
  end, from the job rows);
- Redis commands (INFO commandstats of a private `redis-server` started for the run,
  so nobody else's commands count), per job;
- database writes (INSERT/UPDATE/DELETE statements, by table) of the workers, their
  jobs and the submitter, per job (TD_COUNT_SQL, see `bench/sql_count/sitecustomize.py`).

Both per-job figures include what is spent per second rather than per job (worker
heartbeats, the reconciler, idle polling), spread over the run's jobs; heartbeats are at
the default 5 s.

Writes bench/results/worker_scaling.json (`ratio` = jobs/s of 2 workers / 1 worker, goal
>= 1.8) and bench/results/scaling.json (`workers_1`, `workers_2`, `workers_4` in jobs/s,
`redis_commands_per_job`, `db_writes_per_job`).

    python bench/worker_scaling.py                  # 100 jobs per run, Redis broker
    python bench/worker_scaling.py --cold           # a fresh Python per job (WARM_JOBS=0):
                                                    # *_cold.json, the numbers before warm starts
    python bench/worker_scaling.py --broker embedded  # filesystem broker: no Redis counts
    python bench/worker_scaling.py --quick          # 6 jobs: *_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import command, machine, write_result
from _jobs_env import job_system, private_redis, tiny_checkpoint, wait_job

# Holds the sitecustomize that makes worker and job processes count their SQL.
SQL_COUNT = Path(__file__).resolve().parent / "sql_count"
# Defaults, not the quick-test values of BENCH_SETTINGS: the writes per job depend on them.
SETTINGS = {"HEARTBEAT_SECONDS": "5", "STALE_AFTER_SECONDS": "30"}
# Commands of the measurement itself.
OWN_COMMANDS = {"info", "config"}


class SubmitWrites:
    """Counts this process's database writes (and transactions that wrote) while `on`:
    the submitter's share."""

    def __init__(self) -> None:
        from sqlalchemy import Engine, event

        self.on = False
        self.writes = self.transactions = 0
        event.listen(Engine, "after_cursor_execute", self._count)
        event.listen(Engine, "commit", self._commit)

    def _count(self, conn, _cursor, statement: str, *_args) -> None:
        if self.on and statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.writes += 1
            conn.info["td_bench_wrote"] = True

    def _commit(self, conn) -> None:
        if conn.info.pop("td_bench_wrote", False):
            self.transactions += 1


def _spec(checkpoint: int):
    from shared.contracts.specs import GenerateSpec

    return GenerateSpec(
        checkpoint=checkpoint,
        prompts=["The king"],
        length=16,
        num_samples=2,
        grid={"steps": [8]},
        record_trajectory=False,
        judge=None,  # scaling of jobs, not judging
    )


def _warm_up(spec, n_workers: int) -> int:
    """Run jobs until every worker has finished one; return how many ran."""
    from shared import submit

    seen: set[str] = set()
    ran = 0
    for _ in range(10):
        done = [wait_job(submit.submit_generate(spec).id, 600, 0.05) for _ in range(n_workers)]
        ran += len(done)
        seen |= {j.worker for j in done}
        if len(seen) == n_workers:
            return ran
    raise RuntimeError(f"only {len(seen)} of {n_workers} workers took a job")


def _redis_calls(url: str) -> dict[str, int]:
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    calls = {name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items()}
    return {n: c for n, c in sorted(calls.items()) if n.split("|")[0] not in OWN_COMMANDS}


def _sql_counts(path: Path) -> dict[str, int]:
    total: dict[str, int] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            for key, n in json.loads(line).items():
                if key != "pid":
                    total[key] = total.get(key, 0) + n
    return total


def throughput(
    n_workers: int, n_jobs: int, broker: str, warm: bool, submit: SubmitWrites
) -> dict[str, Any]:
    """One run: `n_workers` single-thread workers over `n_jobs` generation jobs."""
    import redis

    from shared import submit
    from shared.models import JobStatus

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="td-scaling-")))
        settings = dict(SETTINGS)
        if broker == "redis":
            settings["REDIS_URL"] = stack.enter_context(private_redis(tmp))
        env = stack.enter_context(job_system(broker, **settings))
        spec = _spec(tiny_checkpoint(env.data_dir))
        sql_file = tmp / "sql.jsonl"
        worker_env = {
            "WARM_JOBS": "1" if warm else "0",
            "TD_COUNT_SQL": str(sql_file),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SQL_COUNT), os.getenv("PYTHONPATH")])),
        }
        env.start_workers(n_workers, threads=1, env=worker_env)
        if broker == "redis":
            redis.Redis.from_url(settings["REDIS_URL"]).config_resetstat()
        submit.on, submit.writes, submit.transactions = True, 0, 0
        warm_up = _warm_up(spec, n_workers)
        t0 = time.perf_counter()
        ids = [submit.submit_generate(spec).id for _ in range(n_jobs)]
        done = [wait_job(i, timeout=3600, poll_s=0.1) for i in ids]
        seconds = time.perf_counter() - t0
        submit.on = False
        redis_calls = _redis_calls(settings["REDIS_URL"]) if broker == "redis" else {}
        env.stop_workers()  # they write their SQL counts as they exit
        sql = _sql_counts(sql_file)
    failed = [j.id for j in done if j.status != JobStatus.SUCCEEDED]
    if failed:
        raise RuntimeError(f"jobs {failed} did not succeed: {done[0].error}")
    all_jobs = warm_up + n_jobs  # the counts cover the warm-up jobs too
    writes = {k: n for k, n in sql.items() if k not in ("statements", "write_transactions")}
    db_writes = sum(writes.values()) + submit.writes
    write_transactions = sql.get("write_transactions", 0) + submit.transactions
    redis_total = sum(redis_calls.values())
    job_seconds = [(j.finished_at - j.started_at).total_seconds() for j in done]
    return {
        "workers": n_workers,
        "jobs": n_jobs,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(n_jobs / seconds, 4),
        "job_seconds_median": round(statistics.median(job_seconds), 3),
        "jobs_counted": all_jobs,
        "redis_commands_per_job": round(redis_total / all_jobs, 1) if redis_calls else None,
        "redis_commands": redis_calls,
        "db_writes_per_job": round(db_writes / all_jobs, 1),
        "db_write_transactions_per_job": round(write_transactions / all_jobs, 1),
        "db_statements_per_job": round(sql.get("statements", 0) / all_jobs, 1),
        "db_writes": {**dict(sorted(writes.items())), "submitter": submit.writes},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 jobs: checks that it runs")
    parser.add_argument("--jobs", type=int, help="jobs per run (default 100)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--broker", choices=("redis", "embedded"), default="redis")
    parser.add_argument("--cold", action="store_true", help="a fresh Python per job")
    args = parser.parse_args()
    n_jobs = args.jobs or (6 if args.quick else 100)
    counts = [int(n) for n in args.workers.split(",")]
    submit = SubmitWrites()
    runs = {n: throughput(n, n_jobs, args.broker, not args.cold, submit) for n in counts}
    for r in runs.values():
        print(
            f"{r['workers']} worker(s): {r['jobs']} jobs in {r['seconds']:.1f}s = "
            f"{r['jobs_per_s']:.3f} jobs/s; job median {r['job_seconds_median']:.2f}s; "
            f"per job: {r['redis_commands_per_job']} Redis commands, "
            f"{r['db_writes_per_job']} DB writes in {r['db_write_transactions_per_job']} commits"
        )
    about = {
        "threads_per_worker": 1,
        "broker": args.broker,
        "job_start": "fresh process" if args.cold else "forked from the warm process",
        "command": command(),
        "machine": machine(),
    }
    suffix = ("_cold" if args.cold else "") + ("_quick" if args.quick else "")
    result: dict[str, Any] = {}
    if 1 in runs and 2 in runs:
        ratio = runs[2]["jobs_per_s"] / runs[1]["jobs_per_s"]
        print(f"ratio {ratio:.2f} (goal >= 1.8)")
        result = {"ratio": round(ratio, 3), "goal": "ratio >= 1.8"}
    result |= {"one_worker": runs.get(1), "two_workers": runs.get(2), **about}
    print(f"wrote {write_result('worker_scaling' + suffix, result)}")

    def per_job(key: str) -> float | None:
        values = [r[key] for r in runs.values() if r[key] is not None]
        return statistics.median(values) if values else None

    scaling = {f"workers_{n}": r["jobs_per_s"] for n, r in runs.items()}
    scaling |= {
        "redis_commands_per_job": per_job("redis_commands_per_job"),
        "db_writes_per_job": per_job("db_writes_per_job"),
        "db_write_transactions_per_job": per_job("db_write_transactions_per_job"),
        "per_job_note": "median over the runs; includes per-second costs spread over jobs",
        "runs": {f"workers_{n}": r for n, r in runs.items()},
        **about,
    }
    print(f"wrote {write_result('scaling' + suffix, scaling)}")


if __name__ == "__main__":
    main()
