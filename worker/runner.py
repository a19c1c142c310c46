"""Runs one job attempt in its own process group and watches over it.

    claim -> start the job process in a new session -> heartbeat every HEARTBEAT_SECONDS
    while it runs -> record how it ended

The job body runs in a child process, not in the Celery worker: torch stays out of the
worker, a crash in the job cannot take the worker down, and the whole process group (with
any `accelerate launch` children) can be signalled. Cancel: the child stops at its next
check of the database flag; the runner also sends SIGTERM to the group (the child treats
it as the same request: finish the step, save, exit) and SIGKILL after
CANCEL_GRACE_SECONDS. If the worker itself dies, the child notices its parent is gone and
kills its group; the job's heartbeat goes stale and the reconciler queues it again.

Where the job process comes from. Warm (the default on Linux): it is forked from this
worker's warm process (`python -m worker.execute --warm`, started with the worker's first
job), which has already imported torch, transformers and the job modules, so a job starts
in milliseconds rather than the seconds those imports take. The warm process is in a
session of its own, never touches the database or CUDA, and exits when the worker does;
its jobs then see their parent gone and kill themselves. Cold (`WARM_JOBS=0`, or
`run(..., warm=False)`, or whenever the warm process cannot start or answer): a fresh
`python -m worker.execute JOB ATTEMPT WORKER`. Either way the job runs in a new session,
writes its output to `log_path`, and exits 0, 1 or EXIT_STOPPED.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, event

from shared import jobs
from shared.settings import get_settings

log = logging.getLogger(__name__)

# Exit codes of `worker.execute` beside 0 (done) and 1 (an exception: the job failed).
EXIT_STOPPED = 3  # stopped on request (cancel flag, SIGTERM); state was saved
# Set when the worker shuts down: runners stop their jobs and give them back to the queue.
SHUTDOWN = threading.Event()

ROOT = Path(__file__).resolve().parent.parent
# How long a worker's first job waits for the warm process to import torch and the rest:
# generous, because a loaded machine takes 20 s; past it, jobs start cold.
WARM_READY_TIMEOUT_S = 300.0
# How long a job waits for the (ready) warm process to fork it: a fork takes milliseconds.
WARM_FORK_TIMEOUT_S = 30.0


@dataclass
class Outcome:
    returncode: int
    cancelled: bool  # a user asked
    lost: bool  # another attempt or action took the job
    shutdown: bool  # the worker is stopping


class JobProcess(Protocol):
    """What the runner needs of a job's process (`subprocess.Popen` has it)."""

    pid: int

    def wait(self, timeout: float | None = None) -> int: ...


def log_path(job_id: int, attempt: int) -> Path:
    return get_settings().job_log(job_id, attempt)


def pid_path(job_id: int, attempt: int) -> Path:
    """Holds the pid of the attempt's process while it runs (for operators and tests)."""
    return log_path(job_id, attempt).with_suffix(".pid")


def warm_enabled() -> bool:
    """WARM_JOBS=1 forks jobs from a warm process, 0 starts a fresh Python for each.

    On by default on Linux only: macOS's system libraries are not safe to use in a child
    forked from a process that has loaded them (why Python spawns there by default).
    """
    warm = get_settings().warm_jobs
    return sys.platform == "linux" if warm is None else warm


def _spawn(c: jobs.Claim) -> subprocess.Popen:
    """A fresh `python -m worker.execute JOB ATTEMPT WORKER` (the cold start)."""
    with log_path(c.job_id, c.attempt).open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.execute", str(c.job_id), str(c.attempt), c.worker],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach its children too
            cwd=ROOT,
        )


# ----------------------------------------------------------------------------- warm process


class WarmProcessGone(RuntimeError):
    """The warm process exited, or did not answer in time: start the job cold."""


class ForkedJob:
    """A job process the warm process forked: `pid` and `wait`, as on `subprocess.Popen`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"job process {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def ended(self, returncode: int) -> None:
        self.returncode = returncode
        self._ended.set()


class WarmProcess:
    """`python -m worker.execute --warm` and the jobs it forked for this worker.

    One per worker process, shared by its runner threads. Requests go down its stdin and
    replies come up its stdout (`worker.execute.serve_warm` gives the protocol); a thread
    here reads the replies and hands each to the runner waiting for it.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.execute", "--warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # signals meant for the worker's group are not for it
            cwd=ROOT,
        )
        self._lock = threading.Lock()  # `_waiting`, `_jobs` and `gone`
        self._write_lock = threading.Lock()  # one request at a time down the pipe
        self._waiting: dict[str, queue.SimpleQueue[ForkedJob | str]] = {}
        self._jobs: dict[int, ForkedJob] = {}
        self._ready = threading.Event()
        self._settled = threading.Event()  # ready, or gone before it was
        self.gone = False
        threading.Thread(target=self._read, name="warm-replies", daemon=True).start()

    def wait_ready(self, timeout: float) -> bool:
        """True once it has imported everything; False if it died or took too long."""
        self._settled.wait(timeout)
        return self._ready.is_set() and not self.gone

    def start(self, c: jobs.Claim, log_file: Path) -> ForkedJob:
        """Fork the job process of claim `c`, writing to `log_file`."""
        token = uuid.uuid4().hex
        request = {
            "token": token,
            "argv": [str(c.job_id), str(c.attempt), c.worker],
            "log": str(log_file),
            "env": dict(os.environ),  # what a fresh process would inherit now
        }
        answer: queue.SimpleQueue[ForkedJob | str] = queue.SimpleQueue()
        with self._lock:
            if self.gone:
                raise WarmProcessGone("the warm process has exited")
            self._waiting[token] = answer
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: closed meanwhile
            with self._lock:
                self._waiting.pop(token, None)
            raise WarmProcessGone(f"the warm process is not listening: {exc}") from exc
        try:
            reply = answer.get(timeout=WARM_FORK_TIMEOUT_S)
        except queue.Empty:
            # Hung: end it (a job it forks later dies with it) and start this one cold.
            self.close(kill=True)
            raise WarmProcessGone("the warm process did not answer") from None
        if isinstance(reply, str):
            raise WarmProcessGone(reply)
        return reply

    def _read(self) -> None:
        try:
            self._dispatch()
        finally:
            self._gone()

    def _dispatch(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                reply = None
            if not isinstance(reply, dict):  # a stray print before it moved stdout aside
                log.info("warm process: %s", line.decode(errors="replace").rstrip())
                continue
            if "ready" in reply:
                self._ready.set()
                self._settled.set()
            elif "returncode" in reply:
                with self._lock:
                    job = self._jobs.pop(reply["pid"], None)
                if job is not None:
                    job.ended(reply["returncode"])
            else:
                error = reply.get("error")
                forked = None if error else ForkedJob(reply["pid"])
                with self._lock:
                    if forked is not None:
                        self._jobs[forked.pid] = forked
                    answer = self._waiting.pop(reply["token"], None)
                if answer is not None:
                    answer.put(forked or f"the warm process could not fork: {error}")

    def _gone(self) -> None:
        """The warm process exited: its jobs kill themselves; make sure, and say so."""
        self.proc.wait()
        with self._lock:
            self.gone = True
            orphans, self._jobs = list(self._jobs.values()), {}
            waiting, self._waiting = list(self._waiting.values()), {}
        self._settled.set()
        for answer in waiting:
            answer.put("the warm process exited")
        for job in orphans:
            log.warning("warm process exited under job process %s; killing it", job.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)
            job.ended(-signal.SIGKILL)

    def close(self, *, kill: bool = False) -> None:
        """Let it exit (closing its stdin) or kill it; its jobs die with it either way."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(OSError), self._write_lock:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)


_warm: WarmProcess | None = None
_warm_broken = False  # it once failed to start: start jobs cold from then on
_warm_lock = threading.Lock()


def warm_process() -> WarmProcess | None:
    """This worker's warm process, started and waited for on first use (a worker's first
    job waits for the imports, as a cold job would); None if it cannot start."""
    global _warm, _warm_broken
    with _warm_lock:
        if _warm_broken:
            return None
        if _warm is None or _warm.gone:  # first use, or it died since (it starts again)
            _warm = WarmProcess()
        warm = _warm
    if warm.wait_ready(WARM_READY_TIMEOUT_S):
        return warm
    log.warning("the warm process did not start; jobs start cold (a fresh Python each)")
    warm.close(kill=True)
    with _warm_lock:
        _warm_broken = True
    return None


def stop_warm_process() -> None:
    """End this process's warm process, if any (tests; it also ends when we exit)."""
    global _warm, _warm_broken
    with _warm_lock:
        warm, _warm, _warm_broken = _warm, None, False
    if warm is not None:
        warm.close()


def start_job(c: jobs.Claim, warm: WarmProcess | None) -> JobProcess:
    """Start the process of claim `c`: forked from `warm` if given and alive, else cold."""
    path = log_path(c.job_id, c.attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    if warm is not None:
        try:
            return warm.start(c, path)
        except WarmProcessGone as exc:
            log.warning("job %s: %s; starting it cold", c.job_id, exc)
    return _spawn(c)


def _signal_group(proc: JobProcess, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def supervise(proc: JobProcess, c: jobs.Claim) -> Outcome:
    """Heartbeat until the child exits; stop it on cancel, lost ownership or shutdown."""
    settings = get_settings()
    cancelled = lost = shutdown = False
    kill_at: float | None = None
    while True:
        try:
            rc = proc.wait(timeout=min(settings.heartbeat_seconds, 1.0))
            return Outcome(rc, cancelled, lost, shutdown)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if kill_at is not None:
            if now >= kill_at:
                _signal_group(proc, signal.SIGKILL)
            continue
        try:
            beat = _maybe_beat(c, now)
        except Exception:  # the database is away: keep running, beat again later
            log.warning("job %s: heartbeat failed", c.job_id, exc_info=True)
            beat = None
        if beat is not None:
            cancelled, lost = beat.cancel_requested, not beat.owned
        shutdown = SHUTDOWN.is_set()
        if cancelled or lost or shutdown:
            _signal_group(proc, signal.SIGTERM)
            kill_at = now + settings.cancel_grace_seconds


_last_beat: dict[tuple[int, int], float] = {}


def _maybe_beat(c: jobs.Claim, now: float) -> jobs.Beat | None:
    key = (c.job_id, c.attempt)
    if now - _last_beat.get(key, 0.0) < get_settings().heartbeat_seconds:
        return None
    _last_beat[key] = now
    return jobs.heartbeat(c)


def _error_text(c: jobs.Claim) -> str:
    path = log_path(c.job_id, c.attempt)
    error_file = path.with_suffix(".error")
    if error_file.is_file():
        return error_file.read_text(errors="replace")
    if path.is_file():
        return path.read_text(errors="replace")[-4000:] or "no output"
    return "no output"


def record(c: jobs.Claim, o: Outcome) -> str:
    """Turn how the child ended into the job's next state; return that state's name."""
    _last_beat.pop((c.job_id, c.attempt), None)
    if o.lost:
        return "lost"
    if o.returncode == 0:
        jobs.succeed(c)
        return "succeeded"
    if o.cancelled or (o.returncode == EXIT_STOPPED and jobs.cancel_requested(c.job_id)):
        jobs.mark_cancelled(c)
        return "cancelled"
    if o.shutdown:
        jobs.release(c, "worker shut down; queued again", count=False)
        return "released"
    if o.returncode == 1:
        jobs.fail(c, _error_text(c))
        return "failed"
    reason = (
        f"killed by signal {-o.returncode}"
        if o.returncode < 0
        else f"exited with status {o.returncode}"
    )
    return "requeued" if jobs.release(c, reason) else "failed"


def run(job_id: int, worker: str, *, warm: bool | None = None) -> str:
    """Claim job `job_id` for `worker`, run it to the end, record the result.

    `warm`: fork the job from the warm process (default: `warm_enabled()`), or start a
    fresh Python. The warm process is made ready before the claim, so the job stays
    queued (for any worker to take) while a worker's first job waits for its imports.

    Returns what happened: succeeded, failed, cancelled, requeued, released, lost, or
    skipped (the job was not ours to run: duplicate message, finished, cancelled).
    """
    forker = warm_process() if (warm_enabled() if warm is None else warm) else None
    c = jobs.claim(job_id, worker)
    if c is None:
        log.info("job %s: not claimable, message dropped", job_id)
        return "skipped"
    log.info("job %s: attempt %s on %s", job_id, c.attempt, worker)
    proc = start_job(c, forker)
    pid_file = pid_path(c.job_id, c.attempt)
    pid_file.write_text(f"{proc.pid}\n")
    try:
        outcome = supervise(proc, c)
    except BaseException:
        _signal_group(proc, signal.SIGKILL)
        raise
    finally:
        pid_file.unlink(missing_ok=True)
    return record(c, outcome)


# ----------------------------------------------------------------------------- benchmarks


# A write's kind and table: INSERT [OR x] INTO t, UPDATE t, DELETE FROM t.
_WRITE = re.compile(
    r'\s*(INSERT|UPDATE|DELETE)\b(?:\s+OR\s+\w+)?(?:\s+INTO|\s+FROM)?\s+"?(\w+)', re.IGNORECASE
)


def count_sql(path: str) -> dict[str, int]:
    """Count this process's SQL statements, its writes by kind and table ("UPDATE jobs":
    n) and its transactions that wrote; append them to `path` as a JSON line at exit. For
    bench/worker_scaling.py, through TD_COUNT_SQL=PATH (read below: worker and job
    processes all import this module). Returns the live counts."""
    counts = {"statements": 0, "write_transactions": 0}

    def on_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counts["statements"] += 1
        write = _WRITE.match(statement)
        if write:
            key = f"{write[1].upper()} {write[2]}"
            counts[key] = counts.get(key, 0) + 1
            conn.info["td_wrote"] = True

    def on_commit(conn: Any) -> None:
        if conn.info.pop("td_wrote", False):  # a commit that must reach the disk
            counts["write_transactions"] += 1

    def append() -> None:
        if counts["statements"]:
            with open(path, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), **counts}) + "\n")

    event.listen(Engine, "after_cursor_execute", on_execute)
    event.listen(Engine, "commit", on_commit)
    atexit.register(append)
    return counts


if os.environ.get("TD_COUNT_SQL"):
    count_sql(os.environ["TD_COUNT_SQL"])
