"""The Celery app of the workers: `celery -A worker.app worker -Q cpu` (or `gpu`).

The configuration is `shared.queue.make_celery`'s, the same the senders use; the only task
is `worker.tasks.run_job`. Signals register the worker in the database, start its
heartbeat and reconciler, and, at shutdown, stop running jobs cleanly so they are queued
again instead of waiting for them to finish.
"""

from __future__ import annotations

import logging

from celery import signals

from shared import workers
from shared.models import WorkerState
from shared.queue import make_celery
from worker import maintenance, runner

log = logging.getLogger(__name__)

app = make_celery(main="worker")
app.conf.imports = ("worker.tasks",)

_maintenance: maintenance.Maintenance | None = None


@signals.worker_ready.connect
def _on_ready(sender, **_kwargs) -> None:
    global _maintenance
    name = sender.hostname
    queues = sorted(sender.app.amqp.queues.consume_from)
    workers.register(name, queues, maintenance.detect_device())
    _maintenance = maintenance.Maintenance(name)
    _maintenance.start()
    log.info("worker %s ready on queues %s", name, ",".join(queues))


@signals.worker_shutting_down.connect
def _on_shutting_down(**_kwargs) -> None:
    # Running jobs stop at their next step, save, and go back to the queue.
    runner.SHUTDOWN.set()


@signals.worker_shutdown.connect
def _on_shutdown(sender, **_kwargs) -> None:
    if _maintenance is not None:
        _maintenance.stop()
    try:
        workers.set_state(sender.hostname, WorkerState.OFFLINE)
    except Exception:
        log.warning("could not mark the worker offline", exc_info=True)
