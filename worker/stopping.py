"""How a job body learns it should stop (SIGTERM, the cancel flag, lost ownership, or
the death of the process that started it), and the exit codes that say how it ended.

Its own module (not `worker.execute`) because that one runs as `__main__`: an exception
class defined there would be a different class from the one the job bodies import.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from shared import jobs
from shared.settings import get_settings

log = logging.getLogger(__name__)

# Exit codes of a job process (`worker.execute`), read by the supervisor (`worker.runner`).
EXIT_DONE = 0
EXIT_FAILED = 1  # an exception: the job failed; its text is in the log's `.error` file
EXIT_STOPPED = 3  # stopped on request (cancel flag, SIGTERM); state was saved
EXIT_PRUNED = 4  # a sweep trial's pruner stopped it; state was saved
EXIT_DISPLACED = 5  # another attempt owns the job now: this one's writes were refused

# The database is asked for the cancel flag at most this often (a cheap indexed read).
CHECK_EVERY_S = 1.0


# The slowest step is written down again only when it grew by more than this fraction.
REPORT_GROWTH = 0.1


def step_time_path(job_id: int, attempt: int) -> Path:
    """Where a running attempt keeps its slowest step so far (seconds), for the supervisor
    to size the grace between SIGTERM and SIGKILL (`worker.runner.stop_grace`)."""
    return get_settings().job_log(job_id, attempt).with_suffix(".step")


def read_slowest_step(job_id: int, attempt: int) -> float:
    """The slowest step attempt `attempt` of job `job_id` reported; 0.0 if none yet."""
    try:
        return float(json.loads(step_time_path(job_id, attempt).read_text())["slowest_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


class Stopped(Exception):
    """Raised inside a job body that saw a stop request."""


class Pruned(Stopped):
    """Raised inside a sweep trial's training body that its pruner stopped."""


class StopControl:
    """One answer to "should this job stop?": SIGTERM, a cancel flag, lost ownership.

    A body asks between steps (a training step, a sample set) and at nowhere else, so the
    time between two questions is a step, with whatever evaluation or save it included:
    the slowest such gap is reported (`step_time_path`), because after a stop request the
    job still finishes its step and saves, and the supervisor must wait that long before
    it kills.
    """

    def __init__(self, claim: jobs.Claim) -> None:
        self.claim = claim
        self.event = threading.Event()
        self._checked = 0.0
        self._last_asked: float | None = None  # the first step starts at the first question
        self.slowest_step_s = 0.0
        self._reported_s = 0.0

    def install(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.event.set())

    def should_stop(self) -> bool:
        self._time_step()
        if self.event.is_set():
            return True
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY_S:
            self._checked = now
            try:
                if not jobs.still_owned(self.claim):
                    self.event.set()
            except Exception:  # database away: keep going, the runner decides
                log.warning("cancel check failed", exc_info=True)
        return self.event.is_set()

    def _time_step(self) -> None:
        now = time.monotonic()
        if self._last_asked is not None:
            self.slowest_step_s = max(self.slowest_step_s, now - self._last_asked)
            if self.slowest_step_s > self._reported_s * (1 + REPORT_GROWTH):
                self._report()
        self._last_asked = now

    def _report(self) -> None:
        path = step_time_path(self.claim.job_id, self.claim.attempt)
        if not path.parent.is_dir():  # no supervisor made the log folder: a body run in-process
            self._reported_s = self.slowest_step_s
            return
        tmp = path.with_suffix(".step.tmp")
        try:
            tmp.write_text(json.dumps({"slowest_s": round(self.slowest_step_s, 3)}))
            tmp.replace(path)  # whole or not at all, for a reader at any moment
        except OSError:
            log.warning("could not report the step time", exc_info=True)
            return
        self._reported_s = self.slowest_step_s

    def raise_if_stopped(self) -> None:
        if self.should_stop():
            raise Stopped()


# How often a watcher asks whether the process it watches is still there.
WATCH_EVERY_S = 0.5


def process_gone(pid: int) -> bool:
    """True once process `pid` has ended (a zombie not yet reaped still counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's (a reused pid would be too: rare)
        return False
    return False


def watched_gone(parent: int, also: int | None = None) -> bool:
    """Whether `parent` is no longer our parent (it died: we were re-parented), or process
    `also` has ended."""
    return os.getppid() != parent or (also is not None and process_gone(also))


def watch_parent(parent: int, also: int | None = None) -> None:
    """Kill our process group when process `parent` (who started us) is gone, or process
    `also` (a launcher's parent, say) has ended."""

    def loop() -> None:
        while True:
            if watched_gone(parent, also):
                os.killpg(os.getpgrp(), signal.SIGKILL)
            time.sleep(WATCH_EVERY_S)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()
