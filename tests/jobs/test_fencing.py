"""Fenced attempts: an attempt that lost its job writes nothing more, and stops.

An attempt loses its job when the reconciler gives it to another (its heartbeat went
stale: killed, or cut off from the database and back). Every write of its results is
checked against the job's current attempt in the same transaction (`shared.jobs.fence`),
so the displaced attempt's loss points, evaluations, checkpoints and published state are
refused. And a reconciler that could not reach the database itself does not take a stale
heartbeat for a dead worker (`worker.maintenance.Watch`): an outage shared by everyone
displaces no one.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from shared import db, job_reads, jobs, reconciler, submit
from shared.errors import Displaced
from shared.models import Checkpoint, EvalPoint, Job, JobStatus, LossPoint, Run, utcnow
from shared.storage import ArtifactStore
from tests.jobs.helpers import replayed_steps, tiny_train_spec, wait_for
from worker import results
from worker.bodies.run_state import STATE_DIR, STATE_FILE, publish_state, restore_state, saved_step
from worker.maintenance import Watch
from worker.runner import log_path


def _state(folder, step):
    """A stand-in for a training state: what `saved_step` reads."""
    folder.mkdir(parents=True)
    (folder / STATE_FILE).write_text(json.dumps({"step": step}))
    return folder


def _take_from(c: jobs.Claim, worker: str = "w2@test") -> jobs.Claim:
    """Give job `c` to a new attempt as the reconciler and another worker would: its
    heartbeat goes stale, it is queued again, and claimed."""
    with db.session_scope() as s:
        stale = utcnow() - timedelta(seconds=60)
        s.execute(update(Job).where(Job.id == c.job_id).values(heartbeat_at=stale))
    assert reconciler.reconcile().requeued == [c.job_id]
    taken = jobs.claim(c.job_id, worker)
    assert taken is not None and taken.attempt == c.attempt + 1
    return taken


def _attempt_log(job_id: int, attempt: int) -> str:
    path = log_path(job_id, attempt)
    return path.read_text(errors="replace") if path.is_file() else ""


def _counts(run_id: int) -> tuple[int, int, int]:
    with db.session_scope() as s:
        return tuple(
            s.scalar(select(func.count()).where(model.run_id == run_id))
            for model in (LossPoint, EvalPoint, Checkpoint)
        )


def test_a_displaced_attempt_writes_nothing(job_env, tmp_path):
    job = submit.submit_train(tiny_train_spec(job_env))
    run_id = job.run_id
    first = jobs.claim(job.id, "w1@test")
    store = ArtifactStore()
    results.add_loss_points(first, run_id, [{"step": 2, "loss": 5.0}], {"step": 2})
    publish_state(store, first, run_id, _state(tmp_path / "a1" / STATE_DIR, 10).parent)

    second = _take_from(first)
    before = _counts(run_id)
    later = _state(tmp_path / "a1-later" / STATE_DIR, 20).parent
    refused = [
        lambda: results.add_loss_points(first, run_id, [{"step": 4, "loss": 4.0}], {"step": 4}),
        lambda: results.put_eval_points(first, run_id, 4, [{"ratio": 0.5, "loss": 4.0}]),
        lambda: results.merge_run_summary(first, run_id, {"nll_bound": 1.0}),
        lambda: results.put_checkpoint(first, run_id, 20, "file:///nowhere", {}),
        lambda: jobs.set_result(first, {"steps": 20}),
        lambda: publish_state(store, first, run_id, later),
    ]
    for write in refused:
        with pytest.raises(Displaced, match=f"attempt {first.attempt} no longer owns it"):
            write()
    assert _counts(run_id) == before
    with db.session_scope() as s:
        run, row = s.get(Run, run_id), s.get(Job, job.id)
        assert "nll_bound" not in run.summary and row.result is None and run.step == 2
    # The refused state was not kept, and the run still resumes from the owner's last one.
    assert [u.rsplit("/", 1)[-1] for u in store.list(f"runs/{run_id}/states")] == ["a1-s10"]
    out = tmp_path / "resume"
    restore_state(run_id, out)
    assert saved_step(out / STATE_DIR) == 10

    # The new owner writes, and its state replaces the displaced attempt's.
    assert results.add_loss_points(second, run_id, [{"step": 4, "loss": 4.0}], {"step": 4}) == []
    publish_state(store, second, run_id, _state(tmp_path / "a2" / STATE_DIR, 20).parent)
    assert [u.rsplit("/", 1)[-1] for u in store.list(f"runs/{run_id}/states")] == ["a2-s20"]
    # A cancelled attempt still owns its job until it ends: it saves where it stopped.
    jobs.cancel(job.id)
    results.put_checkpoint(second, run_id, 20, "file:///nowhere", {})
    assert jobs.mark_cancelled(second)
    with pytest.raises(Displaced):
        results.put_checkpoint(second, run_id, 30, "file:///nowhere", {})


@pytest.mark.parametrize("job_env", ["services"], indirect=True)  # PostgreSQL's row locks
def test_a_worker_whose_job_was_taken_stops_it_and_the_job_finishes(job_env, workers):
    """Mid-run, the job is given to another attempt behind the running one's back (as a
    reconciler that saw its heartbeat stale would). The running attempt writes nothing
    after that moment and stops; the job (its taker gone too) is queued again and
    resumes from the last state the displaced attempt published while it owned the job."""
    workers("w1")
    spec = tiny_train_spec(job_env, max_steps=200, save_every=20, eval_every=20)
    job = submit.submit_train(spec)

    def checkpoints() -> int:
        with db.session_scope() as s:
            return s.scalar(select(func.count()).where(Checkpoint.run_id == job.run_id))

    wait_for(lambda: checkpoints() >= 2, 120, what="two checkpoints")
    with db.session_scope() as s:
        # Taken, then read: on PostgreSQL the UPDATE waits for a write in flight (which
        # holds the job's row share-locked) and the reads after it see what that wrote.
        taken = s.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.RUNNING, Job.attempts == 1)
            .values(attempts=2, worker="gone@test", heartbeat_at=utcnow())
            .returning(Job.id)
        ).all()
        assert taken, "the job finished or moved before it could be taken"
    with db.session_scope() as s:
        at_take = (
            s.get(Run, job.run_id).step,
            s.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.run_id == job.run_id)),
            s.get(Run, job.run_id).summary["published_state"],
        )
        evals = s.scalar(select(func.max(EvalPoint.step)).where(EvalPoint.run_id == job.run_id))
    assert at_take[2]["attempt"] == 1

    wait_for(lambda: "no longer owns it" in _attempt_log(job.id, 1), 60, what="attempt 1 to stop")
    with db.session_scope() as s:
        run = s.get(Run, job.run_id)
        assert (
            s.scalar(select(func.max(LossPoint.step)).where(LossPoint.run_id == run.id))
            <= (at_take[0])
        )
        newest = s.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.run_id == run.id))
        assert newest == at_take[1]
        assert s.scalar(select(func.max(EvalPoint.step)).where(EvalPoint.run_id == run.id)) == (
            evals
        )
        assert run.summary["published_state"] == at_take[2]

    # "gone@test" never beats: the reconciler queues the job again and w1 finishes it.
    done = wait_for(
        lambda: (j := job_reads.get_job(job.id)) and JobStatus(j.status).finished and j,
        180,
        what="the job to finish",
    )
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 3, done.error
    with db.session_scope() as s:
        run = s.get(Run, job.run_id)
        steps = sorted(s.scalars(select(LossPoint.step).where(LossPoint.run_id == run.id)))
    assert steps == list(range(2, 201, 2))  # none lost, none twice
    assert run.summary["resumed_from_step"] == at_take[2]["step"]
    assert len(set(replayed_steps(job.id))) == len(replayed_steps(job.id))


def test_a_stale_heartbeat_is_a_dead_worker_only_to_one_that_watched():
    now = [0.0]
    watch = Watch(watch_s=8.0, gap_s=1.5, clock=lambda: now[0])
    assert not watch.lost_visible  # just started: it has watched nothing yet

    def beat(started: float, ended: float) -> None:
        now[0] = ended
        watch.ok(started)

    beat(0.0, 0.1)
    beat(3.0, 3.1)  # 2.9 s after the last one (reconciling in between): no gap
    now[0] = 8.1
    assert watch.lost_visible
    beat(9.0, 16.0)  # a beat that hung for 7 s: the stretch starts again
    assert not watch.lost_visible
    now[0] = 24.0
    assert watch.lost_visible
    watch.failed()
    beat(24.5, 24.6)
    assert not watch.lost_visible
    now[0] = 32.6
    assert watch.lost_visible


def test_a_database_outage_displaces_no_one(cluster_env, cluster_workers):
    """PostgreSQL is down for longer than a heartbeat may be late, while a job runs and
    another worker reconciles: the job is not taken from its worker, finishes in its first
    attempt, and no step is lost."""
    dataset, cluster = cluster_env
    cluster_workers("w1")
    cluster_workers("w2")
    spec = tiny_train_spec(dataset, max_steps=200, save_every=40, eval_every=100)
    job = submit.submit_train(spec)

    def step() -> int:
        with db.session_scope() as s:
            return s.get(Run, job.run_id).step

    wait_for(lambda: step() >= 10, 120, what="training to be under way")
    cluster.ctl("stop")
    time.sleep(10)  # STALE_AFTER_SECONDS is 3: every heartbeat is stale when it returns
    cluster.ctl("start")

    done = wait_for(
        lambda: (j := job_reads.get_job(job.id)) and JobStatus(j.status).finished and j,
        180,
        what="the job to finish after the outage",
    )
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 1, "an attempt was displaced by an outage every worker shared"
    with db.session_scope() as s:
        steps = sorted(s.scalars(select(LossPoint.step).where(LossPoint.run_id == job.run_id)))
    assert steps == list(range(2, 201, 2))
