"""Worker rows: who is online, where, on which queues, running what.

Written by each worker process (registration at start, a beat every HEARTBEAT_SECONDS,
offline at shutdown); read by the dashboard and `text-diffusion jobs`. Job ownership does
not depend on these rows: that is `shared.jobs` and the job's own heartbeat.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import Worker, WorkerState, utcnow


def register(name: str, queues: list[str], device: str) -> None:
    """Insert or refresh the row of worker `name` as online."""
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


def beat(name: str, current_job_id: int | None = None) -> None:
    with session_scope() as s:
        s.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(last_heartbeat=utcnow(), current_job_id=current_job_id)
        )


def set_state(name: str, state: WorkerState) -> None:
    with session_scope() as s:
        s.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(state=state, last_heartbeat=utcnow(), current_job_id=None)
        )


def list_workers() -> list[Worker]:
    with session_scope() as s:
        return list(s.scalars(select(Worker).order_by(Worker.name)))
