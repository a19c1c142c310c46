"""The Celery app of the workers: `celery -A worker.app worker -Q cpu` (or `gpu`).

The configuration is `shared.queue.make_celery`'s, the same the senders use; the only task
is `worker.tasks.run_job`. Signals register the worker in the database, start its
heartbeat and reconciler, and, at shutdown, stop running jobs cleanly so they are queued
again instead of waiting for them to finish.

A drained worker (`text-diffusion workers drain`) exits rather than idling: draining is
for taking a worker away, and an exit is what a script or an operator waits for. A worker
that `text-diffusion up` started exits when `up` is gone (`worker.lifeline`).
"""

from __future__ import annotations

import logging
import os
import signal

from celery import signals

from shared import workers
from shared.models import WorkerState
from shared.queue import make_celery
from shared.settings import get_settings
from worker import lifeline, maintenance, runner

log = logging.getLogger(__name__)

app = make_celery(main="worker")
app.conf.imports = ("worker.tasks",)

_maintenance: maintenance.Maintenance | None = None


@signals.worker_init.connect
def _on_init(**_kwargs) -> None:
    # Before the worker consumes anything: a supervisor already gone stops it here.
    lifeline.start_from_env(get_settings())


@signals.worker_ready.connect
def _on_ready(sender, **_kwargs) -> None:
    global _maintenance
    name = sender.hostname
    queues = sorted(sender.app.amqp.queues.consume_from)
    workers.register(name, queues, maintenance.detect_device())
    _maintenance = maintenance.Maintenance(
        name, stop_consuming=lambda: _stop_consuming(name, queues), shut_down=_shut_down
    )
    _maintenance.start()
    log.info("worker %s ready on queues %s", name, ",".join(queues))


def _stop_consuming(name: str, queues: list[str]) -> None:
    """Stop taking messages from `queues`, through this worker's own remote-control channel:
    the request is carried out in the consumer's event loop, the one thread that may touch
    the consumer. Raises unless the worker confirms it."""
    for queue in queues:
        replies = app.control.cancel_consumer(queue, destination=[name], reply=True, timeout=10)
        if not replies:
            raise RuntimeError(f"worker {name} did not confirm it stopped consuming {queue}")


def _shut_down() -> None:
    # SIGTERM is Celery's warm shutdown; with no job left there is nothing to wait for.
    os.kill(os.getpid(), signal.SIGTERM)


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
