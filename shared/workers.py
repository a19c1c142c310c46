"""Worker rows: who is online, where, on which queues, running what; and draining one.

Written by each worker process (registration at start, a beat every HEARTBEAT_SECONDS,
offline at shutdown); read by the dashboard and `text-diffusion workers`. Job ownership
does not depend on these rows: that is `shared.jobs` and the job's own heartbeat.

Drain (`request_drain`): a flag in the worker's row, which its maintenance thread sees at
its next beat (`worker.maintenance`): it stops consuming, lets its running job finish,
marks itself offline and exits. The row keeps the flag, so it then reads "drained".
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import Worker, WorkerState, utcnow
from shared.settings import get_settings

log = logging.getLogger(__name__)


class WorkerError(ValueError):
    """No such worker, or it cannot do what was asked; the message says which."""


def register(name: str, queues: list[str], device: str) -> None:
    """Insert or refresh the row of worker `name` as online.

    Clears a drain flag left by an earlier drain: starting a worker is how it is undone.
    """
    now = utcnow()
    with session_scope() as s:
        row = s.scalars(select(Worker).where(Worker.name == name)).first()
        if row is None:
            row = Worker(name=name, host=socket.gethostname())
            s.add(row)
        row.host = socket.gethostname()
        row.queues = list(queues)
        row.device = device
        row.pid = os.getpid()
        row.state = WorkerState.ONLINE
        row.started_at = now
        row.last_heartbeat = now
        row.current_job_id = None
        row.drain_requested = False


def beat(name: str, current_job_id: int | None = None) -> bool:
    """Record that worker `name` is alive and what it runs; return whether it should drain."""
    with session_scope() as s:
        s.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(last_heartbeat=utcnow(), current_job_id=current_job_id)
        )
        return bool(s.scalar(select(Worker.drain_requested).where(Worker.name == name)))


def set_state(name: str, state: WorkerState, current_job_id: int | None = None) -> None:
    with session_scope() as s:
        s.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(state=state, last_heartbeat=utcnow(), current_job_id=current_job_id)
        )


def list_workers() -> list[Worker]:
    with session_scope() as s:
        return list(s.scalars(select(Worker).order_by(Worker.name)))


def get_worker(name: str) -> Worker:
    with session_scope() as s:
        row = s.scalars(select(Worker).where(Worker.name == name)).first()
    if row is None:
        raise WorkerError(f"no worker named {name!r} (see `text-diffusion workers list`)")
    return row


def display_state(row: Worker, now: datetime | None = None) -> str:
    """The state to show: the row's; "drained" (offline after a drain); "draining" as soon
    as a drain is asked for; "lost" (says it is running but has not beaten for
    STALE_AFTER_SECONDS: killed, or cut off)."""
    if row.state == WorkerState.OFFLINE:
        return "drained" if row.drain_requested else str(row.state)
    stale = timedelta(seconds=get_settings().stale_after_seconds)
    if row.last_heartbeat < (now or utcnow()) - stale:
        return "lost"
    return str(WorkerState.DRAINING) if row.drain_requested else str(row.state)


def request_drain(name: str) -> Worker:
    """Ask worker `name` to finish its running job, take no new one, and exit.

    The flag in its row is the request: the worker acts on it within HEARTBEAT_SECONDS,
    and it outlasts a lost broker message. A broadcast asking the worker to stop consuming
    is also sent at once, so that a job finishing in between is not followed by another.
    Draining an already draining worker is a no-op; an offline one is an error.
    """
    with session_scope() as s:
        row = s.scalars(select(Worker).where(Worker.name == name)).first()
        if row is None:
            raise WorkerError(f"no worker named {name!r} (see `text-diffusion workers list`)")
        if row.state == WorkerState.OFFLINE:
            raise WorkerError(f"worker {name!r} is offline: there is nothing to drain")
        row.drain_requested = True
        queues = list(row.queues or [])
    _broadcast_stop_consuming(name, queues)
    return get_worker(name)


def _broadcast_stop_consuming(name: str, queues: list[str]) -> None:
    # Best effort: the database flag is the request of record, this only makes it prompt.
    from shared.queue import make_celery

    app = make_celery(get_settings())
    try:
        for queue in queues:
            app.control.cancel_consumer(queue, destination=[name])
    except Exception:
        log.warning("could not tell worker %s to stop consuming at once", name, exc_info=True)
    finally:
        app.close()
