"""How a job body learns it should stop (SIGTERM, the cancel flag, lost ownership, or
the death of the process that started it), and the exit codes that say how it ended.

Its own module (not `worker.execute`) because that one runs as `__main__`: an exception
class defined there would be a different class from the one the job bodies import.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from shared import jobs

log = logging.getLogger(__name__)

# Exit codes of a job process (`worker.execute`), read by the supervisor (`worker.runner`).
EXIT_DONE = 0
EXIT_FAILED = 1  # an exception: the job failed; its text is in the log's `.error` file
EXIT_STOPPED = 3  # stopped on request (cancel flag, SIGTERM); state was saved

# The database is asked for the cancel flag at most this often (a cheap indexed read).
CHECK_EVERY_S = 1.0


class Stopped(Exception):
    """Raised inside a job body that saw a stop request."""


class StopControl:
    """One answer to "should this job stop?": SIGTERM, a cancel flag, lost ownership."""

    def __init__(self, claim: jobs.Claim) -> None:
        self.claim = claim
        self.event = threading.Event()
        self._checked = 0.0

    def install(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.event.set())

    def should_stop(self) -> bool:
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

    def raise_if_stopped(self) -> None:
        if self.should_stop():
            raise Stopped()


def watch_parent(parent: int, also: int | None = None) -> None:
    """Kill our process group when process `parent` (who started us) is gone, or process
    `also` (a launcher's parent, say) has ended."""

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's (a reused pid would be too: rare)
            return False
        return False

    def loop() -> None:
        while True:
            if os.getppid() != parent or (also is not None and gone(also)):
                os.killpg(os.getpgrp(), signal.SIGKILL)
            time.sleep(0.5)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()
