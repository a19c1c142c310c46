"""The supervisor: runs one job attempt in its own process group and watches over it.

    claim -> start the job process in a new session -> heartbeat every HEARTBEAT_SECONDS
    while it runs -> record how it ended

The job body runs in a child process, not in the Celery worker: torch stays out of the
worker, a crash in the job cannot take the worker down, and the whole process group (with
any `accelerate launch` children) can be signalled. Cancel: the child stops at its next
check of the database flag; the runner also sends SIGTERM to the group (the child treats
it as the same request: finish the step, save, exit) and SIGKILL after a grace that
follows the job's own slowest step (`stop_grace`), so that a save is never cut short. If
the worker itself dies, the child notices its parent is gone and
kills its group; the job's heartbeat goes stale and the reconciler queues it again.

Where the job process comes from. Warm (the default on Linux): it is forked from this
worker's warm process (`worker.forkserver`, started with the worker's first job), which
has already imported torch, transformers and the job modules, so a job starts in
milliseconds rather than the seconds those imports take. Cold (`WARM_JOBS=0`, or
`run(..., warm=False)`, or whenever the warm process cannot start or answer): a fresh
`python -m worker.execute JOB ATTEMPT WORKER`. Either way the job runs in a new session,
writes its output to `log_path`, and exits with a code of `worker.stopping`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared import jobs, sweeps
from shared.settings import get_settings
from worker.forkserver import ROOT, WarmProcess, WarmProcessGone, warm_process
from worker.stopping import (
    EXIT_DISPLACED,
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_PRUNED,
    EXIT_STOPPED,
    read_slowest_step,
    step_time_path,
)

log = logging.getLogger(__name__)

# Set when the worker shuts down: runners stop their jobs and give them back to the queue.
SHUTDOWN = threading.Event()


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


# After SIGTERM a job finishes its step, evaluates and saves: the grace before SIGKILL is
# this many of its slowest steps (each timed with any evaluation and save it included),
# and never less than CANCEL_GRACE_SECONDS.
GRACE_STEPS = 3.0


def stop_grace(c: jobs.Claim) -> float:
    """Seconds between SIGTERM and SIGKILL for the attempt of claim `c`."""
    slowest = read_slowest_step(c.job_id, c.attempt)
    return max(get_settings().cancel_grace_seconds, GRACE_STEPS * slowest)


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
            grace = stop_grace(c)
            log.info("job %s: stopping; SIGKILL in %.1f s unless it exits", c.job_id, grace)
            kill_at = now + grace


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
    if o.lost or o.returncode == EXIT_DISPLACED:
        return "lost"
    if o.returncode == EXIT_DONE:
        jobs.succeed(c)
        return "succeeded"
    if o.returncode == EXIT_PRUNED and not o.cancelled:
        jobs.mark_pruned(c)
        return "pruned"
    if o.cancelled or (o.returncode == EXIT_STOPPED and jobs.cancel_requested(c.job_id)):
        jobs.mark_cancelled(c)
        return "cancelled"
    if o.shutdown:
        jobs.release(c, "worker shut down; queued again", count=False)
        return "released"
    if o.returncode == EXIT_FAILED:
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
        step_time_path(c.job_id, c.attempt).unlink(missing_ok=True)
    state = record(c, outcome)
    if state in ("succeeded", "failed", "cancelled", "pruned"):
        _next_trials(c.job_id)
    return state


def _next_trials(job_id: int) -> None:
    """A sweep trial's run ended: queue the sweep's next trials (`shared.sweeps`). A
    failure here costs only latency: the reconciler tops every sweep up too."""
    try:
        sweeps.after_job(job_id)
    except Exception:
        log.exception("job %s: could not top up its sweep", job_id)
