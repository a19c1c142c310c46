"""Job state transitions and spec checks against the database alone (no worker)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from shared import db, errors, job_reads, jobs, reconciler, submit
from shared.contracts.specs import GenerateSpec, SpecError, TrainSpec
from shared.models import Job, JobStatus, Run, utcnow
from tests.jobs.helpers import tiny_train_spec


def _counts() -> tuple[int, int]:
    with db.session_scope() as s:
        return s.scalar(select(func.count(Run.id))), s.scalar(select(func.count(Job.id)))


def _age_heartbeat(job_id: int) -> None:
    with db.session_scope() as s:
        s.execute(
            update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1))
        )


def test_a_second_message_for_a_live_job_is_dropped(job_env):
    job = submit.submit_train(tiny_train_spec(job_env))
    first = jobs.claim(job.id, "a")
    assert first is not None and first.attempt == 1
    assert jobs.claim(job.id, "b") is None  # redelivered while a is alive: dropped
    assert jobs.heartbeat(first).owned
    _age_heartbeat(job.id)  # a died without a trace
    second = jobs.claim(job.id, "b")
    assert second is not None and second.attempt == 2
    assert not jobs.heartbeat(first).owned  # a's late beat cannot take it back
    assert not jobs.succeed(first)
    assert jobs.succeed(second) and job_reads.get_job(job.id).status == JobStatus.SUCCEEDED
    assert jobs.claim(job.id, "c") is None


def test_reconciler_requeues_stale_jobs_until_attempts_run_out(job_env):
    job = submit.submit_train(tiny_train_spec(job_env))
    for attempt in (1, 2, 3):
        assert jobs.claim(job.id, "w").attempt == attempt
        _age_heartbeat(job.id)
        outcome = reconciler.reconcile()
        if attempt < 3:
            assert outcome.requeued == [job.id]
        else:
            assert outcome.failed == [job.id]
        assert reconciler.reconcile() == reconciler.Reconciled([], [], [])  # idempotent
    done = job_reads.get_job(job.id)
    assert done.status == JobStatus.FAILED and "gave up after 3 attempts" in done.error
    assert jobs.retry(job.id).status == JobStatus.QUEUED
    assert job_reads.get_job(job.id).attempts == 0


def test_cancel_a_queued_job_and_retry_it(job_env):
    job = submit.submit_train(tiny_train_spec(job_env))
    assert jobs.cancel(job.id) == JobStatus.CANCELLED
    assert jobs.claim(job.id, "w") is None
    jobs.retry(job.id)
    assert jobs.claim(job.id, "w") is not None
    with pytest.raises(errors.JobError, match="only failed or cancelled"):
        jobs.retry(job.id)


def test_invalid_specs_are_refused_and_nothing_is_stored(job_env, tmp_path):
    with pytest.raises(ValidationError, match="max_steps"):
        tiny_train_spec(job_env, max_steps=-5)
    with pytest.raises(ValidationError, match=r"grid\.schedules"):
        GenerateSpec(checkpoint=1, grid={"schedules": ["zigzag"]})
    with pytest.raises(ValidationError, match="at most 64 per job"):
        GenerateSpec(checkpoint=1, grid={"steps": list(range(1, 9)), "seeds": list(range(9))})
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    for dataset in (str(outside), "../outside.txt", "./../../etc/passwd"):
        with pytest.raises(SpecError, match="outside the data root"):
            submit.submit_train(tiny_train_spec(dataset))
    with pytest.raises(SpecError, match="no checkpoint with id 999"):
        submit.submit_generate(GenerateSpec(checkpoint=999))
    with pytest.raises(SpecError, match="no checkpoint is recorded"):
        submit.submit_generate(GenerateSpec(checkpoint="file:///nowhere/checkpoint-1"))
    with pytest.raises(ValueError, match="unknown queue"):
        submit.submit_train(TrainSpec.from_preset("tiny"), queue="tpu")
    assert _counts() == (0, 0)


def test_dataset_names_relative_to_the_root(job_env):
    job = submit.submit_train(tiny_train_spec("corpus.txt"))
    assert job.spec["dataset"] == str(job_env)
    hub = submit.submit_train(tiny_train_spec("wikitext"))  # a hub name passes unchanged
    assert hub.spec["dataset"] == "wikitext"


def test_the_queue_follows_the_spec_device_unless_named(job_env, capsys):
    from text_diffusion.cli import main

    assert submit.submit_train(tiny_train_spec(job_env)).queue == "cpu"  # auto
    assert submit.submit_train(tiny_train_spec(job_env, device="cpu")).queue == "cpu"
    assert submit.submit_train(tiny_train_spec(job_env, device="cuda")).queue == "gpu"
    explicit = submit.submit_train(tiny_train_spec(job_env, device="cuda"), queue="cpu")
    assert explicit.queue == "cpu" and explicit.spec["device"] == "cuda"

    flags = ["submit", "train", "--preset", "tiny", "--dataset", str(job_env)]
    assert main([*flags, "--device", "cuda"]) == 0
    assert "(train on gpu)" in capsys.readouterr().out
    assert main([*flags, "--device", "cuda", "--queue", "cpu"]) == 0
    assert "(train on cpu)" in capsys.readouterr().out


def test_every_job_kind_has_a_body_and_an_unknown_kind_raises():
    from shared.models import JobKind
    from worker.bodies import BODIES, UnknownJobKind, body_for

    assert set(BODIES) == set(JobKind)
    for kind in JobKind:
        assert callable(body_for(kind)), kind
    with pytest.raises(UnknownJobKind, match="'distill'"):
        body_for("distill")


def test_a_loss_point_written_twice_is_reported_and_stored_once(job_env):
    from shared.models import LossPoint
    from worker import results

    job = submit.submit_train(tiny_train_spec(job_env))
    run_id, claim = job.run_id, jobs.claim(job.id, "w")
    points = [{"step": s, "loss": 1.0} for s in (2, 4)]
    assert results.add_loss_points(claim, run_id, points, {}) == []
    again = [{"step": s, "loss": 1.0} for s in (4, 6)]
    assert results.add_loss_points(claim, run_id, again, {"step": 6}) == [4]
    with db.session_scope() as s:
        stored = s.scalars(select(LossPoint.step).where(LossPoint.run_id == run_id)).all()
        assert sorted(stored) == [2, 4, 6] and s.get(Run, run_id).step == 6


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_the_embedded_broker_resends_only_what_it_lost(job_env):
    from shared.queue import broker_view
    from shared.settings import get_settings

    job = submit.submit_train(tiny_train_spec(job_env))
    task_id = job_reads.get_job(job.id).celery_task_id
    assert task_id in broker_view().waiting
    assert reconciler.reconcile(resend_after_s=0).resent == []  # waiting: never sent twice

    folder = get_settings().broker_dir
    (message,) = (folder / "queue").glob("*.msg")
    message.rename(folder / "processed" / message.name)  # a worker took it, not yet claimed
    assert task_id in broker_view().received
    assert reconciler.reconcile(resend_after_s=3600).resent == []  # give that worker time
    assert reconciler.reconcile(resend_after_s=0).resent == [job.id]  # it died holding it

    new_task = job_reads.get_job(job.id).celery_task_id
    (message,) = (folder / "queue").glob("*.msg")
    message.unlink()  # the broker lost it
    assert reconciler.reconcile(resend_after_s=3600).resent == [job.id]
    assert new_task != job_reads.get_job(job.id).celery_task_id
    assert broker_view().waiting == {job_reads.get_job(job.id).celery_task_id}
