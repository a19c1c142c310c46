"""Background duties of a worker process: its own heartbeat and the reconciler.

Every worker reconciles (`shared.jobs.reconcile`): it is idempotent, so several doing it
at once is harmless, and there is then no separate scheduler to deploy or forget. A job
whose worker died is queued again within about STALE_AFTER_SECONDS.
"""

from __future__ import annotations

import logging
import shutil
import threading

from shared import jobs, workers
from shared.queue import prune_processed
from shared.settings import get_settings

log = logging.getLogger(__name__)

# Jobs this process is running now (job ids), shown in the workers table.
ACTIVE: set[int] = set()


def detect_device() -> str:
    """'cuda' where an NVIDIA driver is installed, else 'cpu' (without importing torch)."""
    return "cuda" if shutil.which("nvidia-smi") else "cpu"


class Maintenance(threading.Thread):
    """Beats for worker `name` every HEARTBEAT_SECONDS; reconciles every half stale period."""

    def __init__(self, name: str) -> None:
        super().__init__(name="td-maintenance", daemon=True)
        self.worker_name = name
        self.stopping = threading.Event()

    def run(self) -> None:
        settings = get_settings()
        every = settings.heartbeat_seconds
        reconcile_every = max(every, settings.stale_after_seconds / 2)
        since_reconcile = reconcile_every  # reconcile once at start
        while not self.stopping.wait(every if since_reconcile < reconcile_every else 0):
            try:
                workers.beat(self.worker_name, next(iter(ACTIVE), None))
                since_reconcile += every
                if since_reconcile >= reconcile_every:
                    since_reconcile = 0.0
                    jobs.reconcile()
                    prune_processed(settings)
            except Exception:  # the database is away; try again next beat
                log.warning("worker maintenance failed", exc_info=True)

    def stop(self) -> None:
        self.stopping.set()
