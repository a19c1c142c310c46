"""Cancel, crash and broker-loss recovery over real worker processes, in both modes."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import func, select

from shared import db, job_reads, jobs, reconciler, submit
from shared.models import Checkpoint, JobStatus, LossPoint, Run
from tests.jobs.helpers import delete_broker_keys, replayed_steps, tiny_train_spec, wait_for
from tests.services import redis_url


def _status(job_id: int) -> JobStatus:
    return JobStatus(job_reads.get_job(job_id).status)


def _checkpoint_steps(run_id: int) -> list[int]:
    with db.session_scope() as s:
        return list(s.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run_id)))


def test_cancel_a_running_job_keeps_its_last_checkpoint(job_env, workers):
    workers("w1")
    job = submit.submit_train(tiny_train_spec(job_env, max_steps=5000, save_every=10))
    wait_for(lambda: _checkpoint_steps(job.run_id), 90, what="a first checkpoint")
    assert jobs.cancel(job.id) == JobStatus.RUNNING
    wait_for(lambda: _status(job.id).finished, 30, what="the job to stop")
    done = job_reads.get_job(job.id)
    assert done.status == JobStatus.CANCELLED and done.attempts == 1
    with db.session_scope() as s:
        run = s.get(Run, job.run_id)
    assert run.status == JobStatus.CANCELLED and run.step < 5000
    assert max(_checkpoint_steps(job.run_id)) >= 10
    assert jobs.cancel(job.id) == JobStatus.CANCELLED  # idempotent


def test_killed_worker_job_resumes_elsewhere_without_duplicates(job_env, workers):
    """Attempt 2 resumes from the last published checkpoint: it writes again only the steps
    after it (logged as skipped), never one at or before it, and no step is lost."""
    first = workers("w1")
    spec = tiny_train_spec(job_env, max_steps=300, save_every=20, eval_every=100)
    job = submit.submit_train(spec)
    # Two rows: the state of the first is published by then (a row precedes its state).
    wait_for(lambda: len(_checkpoint_steps(job.run_id)) >= 2, 90, what="two checkpoints")
    first.kill()
    workers("w2")
    wait_for(lambda: _status(job.id).finished, 120, what="the job to finish on w2")
    done = job_reads.get_job(job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 2 and done.worker == "w2@test"
    with db.session_scope() as s:
        run = s.get(Run, job.run_id)
        steps = list(s.scalars(select(LossPoint.step).where(LossPoint.run_id == run.id)))
    resumed = run.summary["resumed_from_step"]
    assert resumed >= 20
    assert sorted(steps) == list(range(2, 301, 2))  # none lost
    # Written twice: at most the steps between the checkpoint and the kill, each once more.
    replayed = replayed_steps(job.id)
    assert len(set(replayed)) == len(replayed)
    assert all(resumed < step <= resumed + spec.save_every for step in replayed), replayed


def test_flushed_redis_loses_no_job(job_env, workers):
    url = redis_url()
    if "REDIS_URL" not in os.environ or not os.environ["REDIS_URL"]:
        pytest.skip("a broker flush is a services-mode test")

    spec = tiny_train_spec(job_env, max_steps=4, eval_every=100, save_every=100)
    ids = [submit.submit_train(spec).id for _ in range(3)]
    # FLUSHALL as this deployment sees it (every key under its prefix), sparing other
    # test runs that share the database: the messages are gone; the rows are not.
    assert delete_broker_keys(url, os.environ["REDIS_KEY_PREFIX"]) > 0
    first = reconciler.reconcile(resend_after_s=0)
    assert sorted(first.resent) == ids
    assert reconciler.reconcile(resend_after_s=0).resent == []  # now waiting in the queue again
    workers("w1")
    wait_for(lambda: all(_status(i).finished for i in ids), 120, what="every job")
    for i in ids:
        job = job_reads.get_job(i)
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 1, job.error
    with db.session_scope() as s:
        assert s.scalar(select(func.count(LossPoint.id))) == 3 * 2


def test_job_killed_every_time_ends_failed(job_env, workers, monkeypatch):
    """A job whose process is killed on every attempt stops after MAX_ATTEMPTS."""
    worker = workers("w1")
    job = submit.submit_train(tiny_train_spec(job_env, max_steps=100000, save_every=100000))
    for attempt in (1, 2, 3):

        def started(a: int = attempt) -> bool:
            now = job_reads.get_job(job.id)
            # Finished early would be a bug: say how, rather than time out.
            assert not JobStatus(now.status).finished, (now.status, now.attempts, now.error)
            return now.attempts == a and now.status == JobStatus.RUNNING

        wait_for(started, 90, what=f"attempt {attempt}")
        worker.kill_job(job.id, attempt)
    wait_for(lambda: _status(job.id).finished, 60, what="the job to give up")
    done = job_reads.get_job(job.id)
    assert done.status == JobStatus.FAILED and done.attempts == 3
    assert "gave up after 3 attempts" in done.error and "signal 9" in done.error


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_retry_resumes_from_the_published_state_not_a_newer_local_one(job_env, tmp_path):
    # An attempt killed after saving its state locally but before publishing it (and
    # before writing the loss points up to it) must not leave that state to the next
    # attempt on the same machine: those steps' loss points would never be written.
    import json

    from shared.storage import ArtifactStore
    from worker.bodies.run_state import (
        OLD_STATE_DIR,
        STATE_DIR,
        STATE_FILE,
        publish_state,
        restore_state,
        saved_step,
    )

    def state(folder, step):
        folder.mkdir(parents=True)
        (folder / STATE_FILE).write_text(json.dumps({"step": step}))
        return folder

    job = submit.submit_train(tiny_train_spec(job_env))
    claim = jobs.claim(job.id, "w1@test")
    out = tmp_path / f"run-{job.run_id}"
    state(out / STATE_DIR, 80)
    state(out / OLD_STATE_DIR, 60)
    restore_state(job.run_id, out)  # nothing published yet: start over
    assert not (out / STATE_DIR).exists() and not (out / OLD_STATE_DIR).exists()

    published = state(tmp_path / "published" / STATE_DIR, 60).parent
    publish_state(ArtifactStore(), claim, job.run_id, published)
    state(out / STATE_DIR, 80)
    restore_state(job.run_id, out)
    assert saved_step(out / STATE_DIR) == 60


services = pytest.mark.parametrize("job_env", ["services"], indirect=True)


def _queued_task_ids() -> list[str]:
    """Task ids of the messages waiting in this test's `cpu` queue, read from Redis itself
    (every priority level kombu keeps a list for)."""
    import json

    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = os.environ["REDIS_KEY_PREFIX"]
    try:
        keys = [f"{prefix}cpu", *(f"{prefix}cpu\x06\x16{p}" for p in (3, 6, 9))]
        messages = [m for key in keys for m in client.lrange(key, 0, -1)]
    finally:
        client.close()
    return [json.loads(m)["headers"]["id"] for m in messages]


def _task_ids(job_ids: list[int]) -> list[str]:
    return sorted(job_reads.get_job(i).celery_task_id for i in job_ids)


def _busy_worker(job_env, workers, monkeypatch, **settings: str) -> int:
    """One worker (one job at a time) running a long job; returns that job's id. A short
    job runs first, so that the long one is claimed as soon as it is received (a worker's
    first job waits for its warm process's imports, received but not yet claimed)."""
    from tests.jobs.helpers import reset_process_caches

    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    reset_process_caches()
    workers("w1")
    first = submit.submit_train(tiny_train_spec(job_env, max_steps=2, eval_every=100))
    wait_for(lambda: _status(first.id).finished, 120, what="the first job")
    long = submit.submit_train(tiny_train_spec(job_env, max_steps=100000, save_every=100000))
    wait_for(lambda: _status(long.id) == JobStatus.RUNNING, 90, what="the long job to run")
    return long.id


@services
def test_jobs_a_flushed_broker_lost_are_sent_again_within_30_s(job_env, workers, monkeypatch):
    """At the default reconcile pace (every STALE_AFTER_SECONDS / 2 = 15 s) and the default
    REQUEUE_AFTER_SECONDS (120 s): what a FLUSHALL took is back in the queue within 30 s."""
    long = _busy_worker(
        job_env, workers, monkeypatch, STALE_AFTER_SECONDS="30", REQUEUE_AFTER_SECONDS="120"
    )
    spec = tiny_train_spec(job_env, max_steps=4, eval_every=100, save_every=100)
    waiting = [submit.submit_train(spec).id for _ in range(3)]
    assert sorted(_queued_task_ids()) == _task_ids(waiting)
    # FLUSHALL as this deployment sees it (every key under its prefix).
    assert delete_broker_keys(redis_url(), os.environ["REDIS_KEY_PREFIX"]) > 0
    assert _queued_task_ids() == []
    flushed = time.monotonic()
    wait_for(lambda: len(_queued_task_ids()) >= 3, 30, 0.2, what="the lost messages back")
    took = time.monotonic() - flushed
    assert sorted(_queued_task_ids()) == _task_ids(waiting), "each lost job sent once"
    assert took <= 30 and _status(long) == JobStatus.RUNNING
    jobs.cancel(long)


@services
def test_jobs_waiting_behind_busy_workers_are_not_sent_again(job_env, workers, monkeypatch):
    """30 jobs wait (their messages in Redis) for longer than REQUEUE_AFTER_SECONDS, over
    several reconciler passes (every 1.5 s here): still exactly 30 messages, one each."""
    long = _busy_worker(
        job_env, workers, monkeypatch, STALE_AFTER_SECONDS="3", REQUEUE_AFTER_SECONDS="4"
    )
    spec = tiny_train_spec(job_env, max_steps=4, eval_every=100, save_every=100)
    waiting = [submit.submit_train(spec).id for _ in range(30)]
    time.sleep(12)  # eight passes of the worker's reconciler, the later ones past 4 s
    reconciler.reconcile()  # and one here, for good measure
    assert all(_status(i) == JobStatus.QUEUED for i in waiting)
    assert sorted(_queued_task_ids()) == _task_ids(waiting)  # 30 messages: none sent twice
    jobs.cancel(long)
