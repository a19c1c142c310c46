"""Background duties of a worker process: its own heartbeat, the reconciler, and draining.

Every worker reconciles (`shared.reconciler`): it is idempotent, so several doing it
at once is harmless, and there is then no separate scheduler to deploy or forget. A job
whose worker died is queued again within about STALE_AFTER_SECONDS.

A worker is declared lost only by a reconciler that could have seen it beat: one that has
itself reached the database, beat after beat, for longer than a heartbeat can be late
(`Watch`). After an outage every heartbeat is stale, the survivors' as much as the dead's;
the reconciler then waits until the live ones have written again, rather than hand their
jobs to a second attempt (which the fencing in `shared.jobs.fence` would stop, at the cost
of the work since the last checkpoint).

Drain: a beat that finds the worker's drain flag set (`shared.workers.request_drain`)
marks it draining and stops it consuming; once it holds no job (running or reserved), it
marks itself offline (the row then reads "drained") and asks the process to exit.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable

from celery.worker import state as celery_state

from shared import reconciler, sweeps, workers
from shared.db import RETRY_MAX_DELAY_S
from shared.models import WorkerState
from shared.queue import prune_processed
from shared.settings import get_settings

log = logging.getLogger(__name__)

# Jobs this process is running now (job ids), shown in the workers table.
ACTIVE: set[int] = set()


def detect_device() -> str:
    """'cuda' where an NVIDIA driver is installed, else 'cpu' (without importing torch)."""
    return "cuda" if shutil.which("nvidia-smi") else "cpu"


def idle() -> bool:
    """No job running, and no message received that is waiting to run."""
    return not ACTIVE and not celery_state.reserved_requests


class Watch:
    """How long this process has reached the database without a gap: a stale heartbeat
    means a dead worker only if we watched for longer than one can be held up.

    A gap is a failed beat, or one that took longer than `gap_s` (it hung on an unreachable
    database; the time between beats, which includes our own reconciling, is not a gap).
    After one, `lost_visible` is False until `watch_s` more seconds of beats:
    STALE_AFTER_SECONDS, plus the longest pause a writer's retries take
    (`shared.db.RETRY_MAX_DELAY_S`) before it writes again once the database is back.
    """

    def __init__(self, watch_s: float, gap_s: float, clock: Callable[[], float]) -> None:
        self.watch_s, self.gap_s, self.clock = watch_s, gap_s, clock
        self.since: float | None = None  # start of the current gap-free stretch
        self.last_ok: float | None = None

    def ok(self, started: float) -> None:
        """A beat that began at `started` (our clock) succeeded just now."""
        now = self.clock()
        if self.last_ok is None or now - started > self.gap_s:
            self.since = now
        self.last_ok = now

    def failed(self) -> None:
        self.since = self.last_ok = None

    @property
    def lost_visible(self) -> bool:
        return self.since is not None and self.clock() - self.since >= self.watch_s


class Maintenance(threading.Thread):
    """Beats for worker `name` every HEARTBEAT_SECONDS; reconciles every half stale period.

    `stop_consuming` and `shut_down` are the Celery side of a drain (`worker.app`): the first
    returns once the worker takes no new message, the second starts a warm shutdown.
    """

    def __init__(
        self,
        name: str,
        stop_consuming: Callable[[], None] = lambda: None,
        shut_down: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="td-maintenance", daemon=True)
        self.worker_name = name
        self.stopping = threading.Event()
        self.stop_consuming = stop_consuming
        self.shut_down = shut_down
        self.draining = False

    def run(self) -> None:
        settings = get_settings()
        every = settings.heartbeat_seconds
        reconcile_every = max(every, settings.stale_after_seconds / 2)
        watch = Watch(
            settings.stale_after_seconds + RETRY_MAX_DELAY_S,
            gap_s=max(2 * every, settings.stale_after_seconds / 2),  # a beat that hung
            clock=time.monotonic,
        )
        next_reconcile = 0.0  # reconcile once at start
        while not self.stopping.is_set():
            try:
                started = time.monotonic()
                drain = workers.beat(self.worker_name, next(iter(ACTIVE), None))
                watch.ok(started)
            except Exception:  # the database is away; beat again at the next one
                log.warning("worker heartbeat failed", exc_info=True)
                watch.failed()
                drain = False
            try:
                if drain and self.drain():
                    return
                if watch.last_ok is not None and time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + reconcile_every
                    reconciler.reconcile(requeue_stale=watch.lost_visible)
                    sweeps.top_up_all()
                    prune_processed(settings)
            except Exception:  # the database or broker is away; try again next beat
                log.warning("worker maintenance failed", exc_info=True)
            self.stopping.wait(every)

    def drain(self) -> bool:
        """One step of a drain; True once the worker is idle, marked offline, and exiting."""
        if not self.draining:
            workers.set_state(self.worker_name, WorkerState.DRAINING, next(iter(ACTIVE), None))
            self.stop_consuming()  # raises if unconfirmed: tried again at the next beat
            self.draining = True
            log.info("draining: taking no new job; exiting once the running one ends")
        if not idle():
            return False
        workers.set_state(self.worker_name, WorkerState.OFFLINE)
        log.info("drained: exiting")
        self.shut_down()
        return True

    def stop(self) -> None:
        self.stopping.set()
