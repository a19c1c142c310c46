"""Background duties of a worker process: its own heartbeat, the reconciler, and draining.

Every worker reconciles (`shared.jobs.reconcile`): it is idempotent, so several doing it
at once is harmless, and there is then no separate scheduler to deploy or forget. A job
whose worker died is queued again within about STALE_AFTER_SECONDS.

Drain: a beat that finds the worker's drain flag set (`shared.workers.request_drain`)
marks it draining and stops it consuming; once it holds no job (running or reserved), it
marks itself offline (the row then reads "drained") and asks the process to exit.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable

from celery.worker import state as celery_state

from shared import jobs, sweeps, workers
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
        since_reconcile = reconcile_every  # reconcile once at start
        while not self.stopping.wait(every if since_reconcile < reconcile_every else 0):
            try:
                if workers.beat(self.worker_name, next(iter(ACTIVE), None)) and self.drain():
                    return
                since_reconcile += every
                if since_reconcile >= reconcile_every:
                    since_reconcile = 0.0
                    jobs.reconcile()
                    sweeps.top_up_all()
                    prune_processed(settings)
            except Exception:  # the database or broker is away; try again next beat
                log.warning("worker maintenance failed", exc_info=True)

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
