"""A job that outlives Redis's visibility timeout is redelivered, and still runs once.

Redis hands an unacknowledged message to another consumer once it is older than the
visibility timeout (VISIBILITY_TIMEOUT_SECONDS; two days by default, so that this does not
happen to long jobs). If it does happen, the database claim must drop the copy: the job
keeps one attempt on its first worker. Services mode (Redis) only.
"""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from shared import db, job_reads, jobs, submit
from shared.models import JobStatus, LossPoint
from tests.jobs.helpers import replayed_steps, reset_process_caches, tiny_train_spec, wait_for

services = pytest.mark.parametrize("job_env", ["services"], indirect=True)

VISIBILITY_S = 1.0
# Long enough (30 s or more) to outlast a second worker's start and its first sweep.
STEPS = 6000


@services
def test_a_redelivered_job_is_not_run_twice(job_env, workers, monkeypatch):
    monkeypatch.setenv("VISIBILITY_TIMEOUT_SECONDS", str(VISIBILITY_S))
    reset_process_caches()
    workers("w1")
    spec = tiny_train_spec(job_env, max_steps=STEPS, save_every=STEPS, eval_every=STEPS)
    job = submit.submit_train(spec)
    wait_for(lambda: job_reads.get_job(job.id).progress > 0, 90, what="the job to run on w1")
    time.sleep(VISIBILITY_S + 0.5)  # w1 holds the message, unacknowledged, past the timeout

    # Every consumer sweeps the unacknowledged messages on a timer (kombu's restore_visible:
    # first about 10 s after it starts, then about every 100 s) and puts those past the
    # visibility timeout back on their queue; w2, idle, takes it from there.
    w2 = workers("w2")
    task = job_reads.get_job(job.id).celery_task_id
    dropped = re.compile(rf"run_job\[{task}\] succeeded in [\d.]+s: 'skipped'")

    def w2_dropped_it() -> bool:
        assert job_reads.get_job(job.id).status == JobStatus.RUNNING, "finished before redelivery"
        return bool(dropped.search(w2.log.read_text()))

    wait_for(w2_dropped_it, 90, what="w2 to receive the redelivered message and drop it")

    # The rest of the run would only repeat what is shown by now: stop it (a cancel ends
    # the one attempt where it is, saved).
    jobs.cancel(job.id)
    wait_for(lambda: JobStatus(job_reads.get_job(job.id).status).finished, 120, what="the end")
    done = job_reads.get_job(job.id)
    assert done.status == JobStatus.CANCELLED, done.error
    assert done.attempts == 1 and done.worker == "w1@test"
    with db.session_scope() as s:
        steps = sorted(s.scalars(select(LossPoint.step).where(LossPoint.run_id == job.run_id)))
    assert steps and steps == list(range(2, steps[-1] + 1, 2))  # none lost
    assert replayed_steps(job.id) == []  # and none written twice: the job ran once
