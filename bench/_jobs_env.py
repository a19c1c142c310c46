"""A throwaway job system for the job benchmarks: settings, workers, a tiny checkpoint.

    with job_system("embedded") as env:       # or "redis" (REDIS_URL=..., TD_BENCH_REDIS_URL,
                                              # or the test one; private_redis() makes one)
        env.start_workers(2, threads=1)
        job = submit.submit_generate(...)

Everything lives in a temporary DATA_DIR (SQLite, filesystem broker, artifacts); in Redis
mode the broker's keys sit under a unique REDIS_KEY_PREFIX, deleted afterwards, so a
benchmark never touches anyone else's queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
# Quick to notice a finished job; the defaults are sized for long jobs.
BENCH_SETTINGS = {"HEARTBEAT_SECONDS": "0.2", "STALE_AFTER_SECONDS": "10"}


def redis_url() -> str | None:
    """The Redis to measure on (TD_BENCH_REDIS_URL, else the test one) if it answers."""
    import redis

    url = os.environ.get("TD_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception:
        return None
    return url


def _reset() -> None:
    from shared import db, queue
    from shared.settings import get_settings

    get_settings.cache_clear()
    db.dispose_engines()
    queue._producer.cache_clear()


@dataclass
class JobSystem:
    data_dir: Path
    env: dict[str, str]
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start_workers(
        self, n: int, *, threads: int = 1, queues: str = "cpu", env: dict[str, str] | None = None
    ) -> None:
        """Start `n` worker processes; each job they run uses `threads` compute threads.
        `env`: more environment for the workers alone (not this process)."""
        from sqlalchemy import func, select

        from shared import db
        from shared.models import Worker, WorkerState

        env = {**self.env_for_jobs(threads), "MKL_NUM_THREADS": str(threads), **(env or {})}
        base = len(self.workers)
        for i in range(base, base + n):
            log = (self.data_dir / f"worker-{i}.log").open("ab")
            argv = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", queues]
            argv += ["-c", "1", "-n", f"bench{i}@%h", "--without-gossip", "--without-mingle"]
            argv += ["--without-heartbeat", "-l", "WARNING"]
            self.workers.append(
                subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )

        def online() -> int:
            with db.session_scope() as s:
                q = select(func.count(Worker.id)).where(Worker.state == WorkerState.ONLINE)
                return s.scalar(q) or 0

        deadline = time.monotonic() + 120
        while online() < len(self.workers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not come up; see {self.data_dir}/worker-*.log")
            time.sleep(0.2)

    def env_for_jobs(self, threads: int = 1) -> dict[str, str]:
        """The environment a job process of this system sees (for direct baselines)."""
        return {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.workers.clear()


@contextmanager
def job_system(mode: str, **settings: str) -> Iterator[JobSystem]:
    """Point this process's settings at a fresh job system in `mode` (embedded | redis)."""
    from shared import db

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="td-bench-") as tmp:
        data_dir = Path(tmp)
        env = {"DATA_DIR": tmp, **BENCH_SETTINGS, **settings}
        env["DATABASE_URL"] = f"sqlite:///{data_dir / 'td.db'}"
        prefix = f"td-bench-{uuid.uuid4().hex[:12]}:"
        if mode == "redis":
            url = settings.get("REDIS_URL") or redis_url()
            if url is None:
                raise RuntimeError("no Redis answers at TD_BENCH_REDIS_URL or " + DEFAULT_REDIS_URL)
            env.update(REDIS_URL=url, REDIS_KEY_PREFIX=prefix)
        else:
            env["REDIS_URL"] = ""
        os.environ.update(env)
        _reset()
        system = JobSystem(data_dir, env)
        try:
            db.upgrade()
            yield system
        finally:
            system.stop_workers()
            if mode == "redis":
                import redis

                client = redis.Redis.from_url(env["REDIS_URL"])
                keys = list(client.scan_iter(match=f"{prefix}*"))
                if keys:
                    client.delete(*keys)
            os.environ.clear()
            os.environ.update(saved)
            _reset()


@contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """A `redis-server` of our own on a free port, without persistence; yields its URL.

    For counting commands: INFO commandstats on a shared server would count everyone's.
    """
    import shutil
    import socket

    import redis

    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed (apt install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(folder)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(url, socket_connect_timeout=1).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def wait_job(job_id: int, timeout: float = 600.0, poll_s: float = 0.01):
    """Poll until job `job_id` is finished; return its row."""
    from shared import job_reads
    from shared.models import JobStatus

    deadline = time.monotonic() + timeout
    while True:
        job = job_reads.get_job(job_id)
        if JobStatus(job.status).finished:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout:g}s")
        time.sleep(poll_s)


def tiny_train_spec(data_dir: Path, steps: int, **overrides: Any):
    """A 2-layer TrainSpec over a small generated corpus written under data_dir/datasets."""
    from shared.contracts.specs import TrainSpec
    from tests.corpus import paragraphs

    root = data_dir / "datasets"
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(paragraphs(120, seed=1)) + "\n")
    settings = {
        "dataset": str(corpus),
        "seq_len": 32,
        "batch_size": 8,
        "max_steps": steps,
        "scratch": {"layers": 2, "hidden": 64, "heads": 2, "vocab_size": 400},
        "mixed_precision": "no",
        "warmup_steps": 2,
        "log_every": 2,
        "eval_every": steps,
        "save_every": steps,
        "eval_ratios": [0.5],
        "eval_batches": 1,
    }
    return TrainSpec.from_preset("tiny", **{**settings, **overrides})


def tiny_checkpoint(data_dir: Path, steps: int = 20) -> int:
    """Train a 2-layer model in this process (through the job tables, no worker) and
    return the id of its checkpoint row, for generation jobs to use."""
    from shared import jobs, submit
    from worker.bodies.train import run_train
    from worker.execute import load_job
    from worker.stopping import StopControl

    job = submit.submit_train(tiny_train_spec(data_dir, steps))
    claim = jobs.claim(job.id, "bench")
    assert claim is not None
    run_train(claim, load_job(job.id), StopControl(claim))
    jobs.succeed(claim)
    from shared.db import session_scope
    from shared.models import Checkpoint

    with session_scope() as s:
        return s.query(Checkpoint.id).filter(Checkpoint.run_id == job.run_id).one()[0]
