"""The one Celery task: run a job by id. Thin: the runner claims, runs and records it."""

from __future__ import annotations

from shared.queue import TASK_NAME
from worker import maintenance, runner
from worker.app import app


@app.task(name=TASK_NAME, bind=True)
def run_job(self, job_id: int) -> str:
    """Run job `job_id` if it is ours to run; return what happened (for the worker log)."""
    maintenance.ACTIVE.add(job_id)
    try:
        return runner.run(job_id, self.request.hostname)
    finally:
        maintenance.ACTIVE.discard(job_id)
