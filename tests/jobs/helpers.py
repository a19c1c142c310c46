"""Helpers for job-system tests: settings, a tiny spec, real worker processes, polling.

Each test gets its own DATA_DIR (SQLite file, embedded broker folder, artifacts, datasets),
or a throwaway PostgreSQL database and its own key prefix in the test Redis database in
services mode, and settings tuned so that crashes are noticed in seconds (heartbeat 0.5 s,
stale after 3 s).

Everything a test touches is its own: other test runs on the same machine (another
checkout, CI) share the Redis database and the process table, so helpers that reach into
either (deleting broker keys, finding a job's process) are scoped to this test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select

from shared import db
from shared.contracts.specs import TrainSpec
from shared.models import Worker, WorkerState
from shared.settings import get_settings
from tests.corpus import paragraphs
from tests.processes import stop_tree

REPO = Path(__file__).resolve().parents[2]  # the repository root
T = TypeVar("T")

FAST_SETTINGS = {
    "HEARTBEAT_SECONDS": "0.5",
    "STALE_AFTER_SECONDS": "3",
    "CANCEL_GRACE_SECONDS": "5",
    "REQUEUE_AFTER_SECONDS": "60",
    "OMP_NUM_THREADS": "1",  # two cores are shared by everything; keep jobs to one each
    "TOKENIZERS_PARALLELISM": "false",
    # Test workers are many and short-lived: each would hold the packaged judge (~540 MB).
    # tests/jobs/test_warm_start.py turns it on where it tests it.
    "WORKER_PRELOAD_JUDGE": "none",
}


def reset_process_caches() -> None:
    """Forget settings, engines and producers built from the previous environment."""
    from shared import queue

    get_settings.cache_clear()
    db.dispose_engines()
    queue._producer.cache_clear()


def delete_broker_keys(url: str, prefix: str) -> int:
    """Delete every Redis key under `prefix` (this test's broker: queues, bindings, unacked
    messages): a FLUSHALL as far as this test's workers can tell, and no one else's."""
    import redis

    assert prefix, "an empty prefix would delete every test run's keys"
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


def job_processes(worker_pid: int, job_id: int, attempt: int) -> list[int]:
    """Pid of job `job_id` attempt `attempt`'s process, if worker `worker_pid` started it.

    The runner writes it to the attempt's pid file while the job runs; the process counts
    only if it descends from the worker (a fresh process is the worker's child, a warm
    one the child of the worker's warm process). Scoped by worker: job ids restart at 1 in
    every test's database, so a machine-wide search would also find another test's job.
    """
    from worker.runner import pid_path

    try:
        pid = int(pid_path(job_id, attempt).read_text())
    except (OSError, ValueError):
        return []
    ancestor = pid
    for _ in range(3):  # job -> (warm process ->) worker
        try:
            with open(f"/proc/{ancestor}/stat", "rb") as f:
                # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
                ancestor = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return []
        if ancestor == worker_pid:
            return [pid]
    return []


def write_dataset(data_dir: Path) -> Path:
    root = data_dir / "datasets"
    root.mkdir(parents=True, exist_ok=True)
    path = root / "corpus.txt"
    path.write_text("\n".join(paragraphs(120, seed=1)) + "\n")
    return path


def tiny_train_spec(dataset: Path | str, **overrides) -> TrainSpec:
    values = {
        "dataset": str(dataset),
        "seq_len": 32,
        "batch_size": 8,
        "max_steps": 20,
        "scratch": {"layers": 2, "hidden": 64, "heads": 2, "vocab_size": 400},
        "mixed_precision": "no",
        "warmup_steps": 2,
        "log_every": 2,
        "eval_every": 10,
        "save_every": 10,
        "eval_ratios": [0.2, 0.5, 1.0],
        "eval_batches": 1,
        **overrides,
    }
    return TrainSpec.from_preset("tiny", **values)


def wait_for(
    fn: Callable[[], T], timeout: float = 60.0, interval: float = 0.2, what: str = ""
) -> T:
    """Call `fn` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or fn}")
        time.sleep(interval)


class WorkerProcess:
    """A real `celery -A worker.app worker` process in its own process group."""

    def __init__(self, name: str, log_dir: Path, queues: str = "cpu") -> None:
        self.name = f"{name}@test"
        self.log = log_dir / f"{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker.app",
                    "worker",
                    "-Q",
                    queues,
                    "-c",
                    "1",
                    "-n",
                    self.name,
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "INFO",
                ],
                cwd=REPO,
                env=os.environ.copy(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> WorkerProcess:
        def online() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            with db.session_scope() as s:
                row = s.scalars(select(Worker).where(Worker.name == self.name)).first()
                return row is not None and row.state == WorkerState.ONLINE

        wait_for(online, timeout, what=f"worker {self.name} online")
        return self

    def kill_job(self, job_id: int, attempt: int, timeout: float = 30.0) -> None:
        """SIGKILL the process of this job attempt that this worker started."""
        pids = wait_for(
            lambda: job_processes(self.proc.pid, job_id, attempt),
            timeout,
            0.1,
            what=f"job {job_id} attempt {attempt}'s process under {self.name}",
        )
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the worker process alone, as a crash would (its job notices)."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL to everything it started."""
        stop_tree(self.proc, signal.SIGTERM, 20)


def replayed_steps(job_id: int, work_dirs: list[Path] | None = None) -> list[int]:
    """Steps whose loss point some attempt of job `job_id` wrote when it was already stored
    (a step written twice; the schema keeps one row), from the logs of all its attempts,
    in `work_dirs` (default: this process's WORK_DIR). Repeats count: a step written three
    times appears twice."""
    from worker.bodies.train import SKIPPED_LOSS_POINTS

    steps: list[int] = []
    for work_dir in work_dirs or [get_settings().work_dir]:
        for log in sorted((work_dir / "logs").glob(f"job-{job_id}-attempt-*.log")):
            for line in log.read_text(errors="replace").splitlines():
                _, found, tail = line.partition(SKIPPED_LOSS_POINTS)
                if found:
                    steps += [int(step) for step in tail.strip().split(",")]
    return steps
