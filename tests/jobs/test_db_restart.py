"""A PostgreSQL restart in the middle of a training job: the worker and the job reconnect,
and the job finishes in its first attempt with every loss point stored, none lost.

Runs on a PostgreSQL cluster created for the test (restarting the shared test server
would break every other test using it), so it needs root and Debian's postgresql-common;
it skips elsewhere (fails under TD_REQUIRE_SERVICES=1, like every services test).
"""

from __future__ import annotations

from sqlalchemy import select

from shared import db, job_reads, submit
from shared.models import JobStatus, LossPoint, Run, Worker, WorkerState, utcnow
from tests.jobs.helpers import replayed_steps, tiny_train_spec, wait_for


def _run_step(run_id: int) -> int:
    with db.session_scope() as s:
        return s.get(Run, run_id).step


def test_jobs_finish_across_a_postgres_restart(cluster_env, cluster_workers):
    dataset, cluster = cluster_env
    cluster_workers("w1")
    spec = tiny_train_spec(dataset, max_steps=160, save_every=40, eval_every=80)
    job = submit.submit_train(spec)
    wait_for(lambda: _run_step(job.run_id) >= 10, 120, what="training to be under way")

    cluster.restart()  # every open connection of the worker and the job is cut
    restarted_at = utcnow()

    done = wait_for(
        lambda: (j := job_reads.get_job(job.id)) and JobStatus(j.status).finished and j,
        180,
        what="the job to finish after the restart",
    )
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 1, "the job was restarted instead of riding out the outage"
    with db.session_scope() as s:
        steps = sorted(s.scalars(select(LossPoint.step).where(LossPoint.run_id == job.run_id)))
    assert steps == list(range(2, 161, 2))  # none lost
    # None written twice, but for the one batch whose commit the restart may have cut off
    # (its write is retried): contiguous steps, each written once more at most.
    replayed = sorted(replayed_steps(job.id))
    if replayed:
        assert replayed == list(range(replayed[0], replayed[-1] + 1, 2)), replayed

    # The worker's own heartbeat reconnected too: a beat after the restart (the job may
    # finish before the worker's next beat, so wait a few beats rather than look once).
    def worker() -> Worker:
        with db.session_scope() as s:
            return s.scalars(select(Worker).where(Worker.name == "w1@test")).one()

    w = wait_for(
        lambda: (w := worker()).last_heartbeat > restarted_at and w, 30, what="a new heartbeat"
    )
    assert w.state == WorkerState.ONLINE
