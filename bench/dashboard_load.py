"""Dashboard latency on a large database: the runs page and the compare page.

Seeds a fresh database with `--runs` runs x `--steps` evaluation steps x 10 mask ratios
(the defaults make 2,000 x 500 x 10 = 10M evaluation points, plus a loss point per
evaluation step, a checkpoint per run and sample sets on every 10th run), serves the app
with gunicorn (werkzeug's threaded server if gunicorn is missing) in its own process, and
measures from a second process: our load client, `http.client` over keep-alive
connections, logged in with a session cookie like a browser.

    python bench/dashboard_load.py                         # the full size (minutes to seed)
    python bench/dashboard_load.py --runs 100 --steps 50   # a quick check
    python bench/dashboard_load.py --database-url postgresql://td:td@localhost/td_bench

Measured: p50/p95 of `/runs` (page 1, and a filtered, sorted page 3) and of the compare
page with 2 to 8 random runs (`/compare?runs=...`, plus the `/api/compare` call its
script makes, if it makes one), one request at a time, 200 each; `/api/compare` alone
too. Then `--concurrent-clients` clients (default 50, no pause between pages) load the
same pages while two workers each train a tiny model on the same database, until both
jobs end: p95 and errors. Goals: runs_p95_ms < 100, compare_p95_ms < 300.
Writes bench/results/dashboard_load.json (dashboard_load_quick.json at other sizes).
`--database-url` must name an empty database; it is migrated, then filled.

Why our own client and not locust: no extra dependency (locust brings gevent), a few
dozen lines whose timing we can read (request sent to body read, per request), and
exact percentiles rather than locust's rounded buckets.
"""

from __future__ import annotations

import argparse
import http.client
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _common import ROOT, command, machine, write_result

PASSWORD = "bench-password-123"
GOALS = {"runs_p95_ms": 100.0, "compare_p95_ms": 300.0}
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
EVAL_EVERY = 10  # steps between evaluations: step k*10 for k = 1..--steps
CHUNK = 50_000  # rows per executemany


# ----------------------------------------------------------------------------- seeding


def _loss(ratio: float, step: int, offset: float) -> float:
    return 3.0 + 3.0 * ratio + 2.0 * math.exp(-step / 1500) + offset


def _bound(offset: float, step: int) -> float:
    """exp of the midpoint integral of the loss curve: the run's perplexity bound."""
    return math.exp(sum(_loss(r, step, offset) for r in RATIOS) / len(RATIOS))


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


def seed(n_runs: int, n_steps: int) -> dict[str, Any]:
    """Fill the (empty, migrated) database at DATABASE_URL; returns counts and timings."""
    from shared.contracts.specs import TrainSpec
    from shared.db import get_engine
    from shared.models import (
        Checkpoint,
        EvalPoint,
        Job,
        LossPoint,
        Run,
        Sample,
        SampleSet,
    )

    rng = random.Random(0)
    now = datetime.now(UTC)
    specs = {
        p: TrainSpec.from_preset(p, max_steps=n_steps * EVAL_EVERY).model_dump(mode="json")
        for p in ("minilm", "tiny")
    }
    statuses = ["succeeded"] * 16 + ["failed", "failed", "cancelled", "running"]
    runs, jobs = [], []
    for i in range(1, n_runs + 1):
        preset = "minilm" if i % 3 else "tiny"
        status = statuses[i % len(statuses)]
        # Every run has all its evaluations (runs x steps x ratios points in all); a running
        # run is half way through a schedule twice as long.
        steps = n_steps
        max_steps = n_steps * EVAL_EVERY * (2 if status == "running" else 1)
        offset = rng.random()
        spec = {**specs[preset], "lr": rng.choice([1e-4, 3e-4, 1e-3]), "seed": i}
        created = now - timedelta(minutes=10 * (n_runs - i))
        finished = None if status == "running" else created + timedelta(minutes=9)
        summary = {}
        if status == "succeeded":
            bound = _bound(offset, steps * EVAL_EVERY)
            summary = {"ppl_bound": bound, "nll_bound": math.log(bound)}
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
                "finished_at": finished,
                "summary": summary,
                "step": steps * EVAL_EVERY,
                "max_steps": max_steps,
                "tokens_seen": steps * EVAL_EVERY * 1024,
                "_offset": offset,
                "_steps": steps,
            }
        )
        jobs.append(
            {
                "id": i,
                "kind": "train",
                "status": status,
                "run_id": i,
                "spec": spec,
                "attempts": 1,
                "max_attempts": 3,
                "priority": 0,
                # "Running" on GPU machines that are not part of the benchmark: the
                # benchmark's workers (cpu queue) must not pick them up when their
                # heartbeats go stale and the reconciler queues them again.
                "queue": "gpu" if status == "running" else "cpu",
                "cancel_requested": False,
                "progress": steps * EVAL_EVERY / max_steps,
                "created_at": created,
                "started_at": created + timedelta(seconds=5),
                "finished_at": finished,
                "heartbeat_at": None if finished else now,
                "error": "RuntimeError: out of memory" if status == "failed" else None,
            }
        )

    def eval_points():
        for r in runs:
            for k in range(1, r["_steps"] + 1):
                step = k * EVAL_EVERY
                for ratio in RATIOS:
                    loss = _loss(ratio, step, r["_offset"])
                    yield {
                        "run_id": r["id"],
                        "step": step,
                        "ratio": ratio,
                        "loss": loss,
                        "accuracy": max(0.0, 0.6 - ratio / 2),
                    }

    def loss_points():
        for r in runs:
            for k in range(1, r["_steps"] + 1):
                step = k * EVAL_EVERY
                yield {
                    "run_id": r["id"],
                    "step": step,
                    "loss": _loss(0.5, step, r["_offset"]),
                    "mask_ratio": 0.5,
                    "lr": 3e-4,
                    "tokens_seen": step * 1024,
                    "elapsed_s": step * 0.5,
                }

    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    t_all = time.perf_counter()
    with get_engine().begin() as conn:
        t = time.perf_counter()
        plain = [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]
        _insert(conn, Run.__table__, plain, counts)
        _insert(conn, Job.__table__, jobs, counts)
        ckpts = [
            {
                "id": r["id"],
                "run_id": r["id"],
                "step": r["_steps"] * EVAL_EVERY,
                "url": f"file:///bench/run-{r['id']}",
                "metrics": {},
                "created_at": now,
            }
            for r in runs
        ]
        _insert(conn, Checkpoint.__table__, ckpts, counts)
        # Every 10th run gets a sample set: 4 samples with the same prompts, seeds and
        # settings everywhere, so the compare page pairs them.
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
        _insert(conn, SampleSet.__table__, sets, counts)
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
        _insert(conn, Sample.__table__, samples, counts)
        timings["runs_jobs_checkpoints_samples_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _insert(conn, EvalPoint.__table__, eval_points(), counts)
        timings["eval_points_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _insert(conn, LossPoint.__table__, loss_points(), counts)
        timings["loss_points_s"] = time.perf_counter() - t
        if conn.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("runs", "jobs", "checkpoints", "sample_sets"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
    timings["total_s"] = time.perf_counter() - t_all
    filtered = sum(1 for r in runs if r["status"] == "succeeded" and r["preset"] == "minilm")
    rows = sum(counts.values())
    return {
        "runs": n_runs,
        "eval_steps_per_run": n_steps,
        "ratios": len(RATIOS),
        "rows": counts,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "rows_per_s": round(rows / timings["total_s"]),
        "succeeded_ids": [r["id"] for r in runs if r["status"] == "succeeded"],
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
    ids = ",".join(str(i) for i in rng.sample(plan["run_ids"], rng.randint(2, 8)))
    if scenario == "compare_api":
        return scenario, [f"/api/compare?runs={ids}"]
    paths = [f"/compare?runs={ids}"]
    if plan["compare_uses_api"]:
        paths.append(f"/api/compare?runs={ids}")
    return "compare", paths


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=500, help="evaluation steps per run")
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
    parser.add_argument("--skip-concurrent", action="store_true")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
        print(f"seeding {args.runs} runs x {args.steps} steps x {len(RATIOS)} ratios ...")
        seeded = seed(args.runs, args.steps)
        print(
            f"seeded {sum(seeded['rows'].values()):,} rows in {seeded['seconds']['total_s']} s "
            f"({seeded['rows_per_s']:,} rows/s): {seeded['rows']}"
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
            "filtered_page": seeded["filtered_page"],
            "warmup": 5,
        }
        try:
            result: dict[str, Any] = {}
            for name, scenarios in [
                ("runs", ["runs_page1", "runs_filtered"]),
                ("compare", ["compare"]),
                ("compare_api", ["compare_api"]),
            ]:
                measured = run_client(
                    {
                        **plan,
                        "scenarios": scenarios,
                        "clients": 1,
                        "actions": args.requests * len(scenarios),
                    },
                    tmp,
                )
                result[name] = measured
                print(f"{name}: {json.dumps(measured['by_scenario'])}")
            failed = {k: v["errors_by_scenario"] for k, v in result.items() if v["errors"]}
            if failed:
                raise RuntimeError(f"requests failed: {failed}; see {tmp / 'server.log'}")
            runs_ms = [result["runs"]["by_scenario"][s] for s in ("runs_page1", "runs_filtered")]
            summary = {
                "runs_p95_ms": max(x["p95_ms"] for x in runs_ms),
                "runs_p50_ms": max(x["p50_ms"] for x in runs_ms),
                "compare_p95_ms": result["compare"]["by_scenario"]["compare"]["p95_ms"],
                "compare_p50_ms": result["compare"]["by_scenario"]["compare"]["p50_ms"],
                "compare_api_p95_ms": result["compare_api"]["by_scenario"]["compare_api"]["p95_ms"],
            }
            concurrent = None
            if not args.skip_concurrent:
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
        finally:
            server.terminate()
            server.wait(30)

        backend = "postgresql" if env["DATABASE_URL"].startswith("postgres") else "sqlite"
        payload = {
            **summary,
            "goals": GOALS,
            "met": {k: summary[k] < v for k, v in GOALS.items()},
            "database": backend,
            "server": server_kind,
            "seed": seeded,
            "sequential": result,
            "concurrent": concurrent,
            "command": command(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": machine(),
        }
        full = (args.runs, args.steps) == (2000, 500)
        path = write_result("dashboard_load" if full else "dashboard_load_quick", payload)
        print(json.dumps({k: payload[k] for k in (*summary, "met")}, indent=2))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
