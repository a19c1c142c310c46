"""A cancel never kills a save in progress: the grace between SIGTERM and SIGKILL follows
the job's measured step time, not only CANCEL_GRACE_SECONDS.

CANCEL_GRACE_SECONDS is set far below what a step with its evaluation and save takes here
(as a loaded machine makes a 10 s grace too short for a slow step): the job must still
stop at its next step, save, and exit on its own. The runner runs in this process, on
SQLite.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from shared import db, job_reads, jobs, submit
from shared.models import Checkpoint, JobStatus, Run
from shared.settings import get_settings
from tests.jobs.helpers import reset_process_caches, tiny_train_spec, wait_for
from worker import runner
from worker.bodies.run_state import STATE_DIR, saved_step
from worker.stopping import read_slowest_step


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_cancel_waits_for_the_final_save_of_a_slow_step(job_env, monkeypatch):
    monkeypatch.setenv("CANCEL_GRACE_SECONDS", "0.2")
    reset_process_caches()
    spec = tiny_train_spec(
        job_env,
        max_steps=100000,
        save_every=4,
        eval_every=4,
        eval_batches=4,
        scratch={"layers": 6, "hidden": 512, "heads": 8, "vocab_size": 400},
    )
    job = submit.submit_train(spec)
    result: list[str] = []
    thread = threading.Thread(
        target=lambda: result.append(runner.run(job.id, "t@test", warm=False))
    )
    thread.start()

    def checkpoints() -> list[int]:
        with db.session_scope() as s:
            return list(s.scalars(select(Checkpoint.step).where(Checkpoint.run_id == job.run_id)))

    wait_for(lambda: len(checkpoints()) >= 2, 180, what="two checkpoints")
    slowest = read_slowest_step(job.id, 1)  # a step with its evaluation and save
    assert slowest > get_settings().cancel_grace_seconds, "the setting alone would kill it"
    assert runner.stop_grace(runner_claim(job.id)) >= 3 * slowest

    jobs.cancel(job.id)
    thread.join(180)
    assert result == ["cancelled"]
    log = runner.log_path(job.id, 1).read_text()
    assert f"job {job.id} stopped on request" in log  # it exited itself: no SIGKILL
    with db.session_scope() as s:
        summary = s.get(Run, job.run_id).summary
    # It ended its training (the summary written at the end says why) and saved at the
    # step it stopped at, locally and as a checkpoint.
    assert summary["stopped_by"] == "callback"
    out = get_settings().work_dir / f"run-{job.run_id}"
    assert saved_step(out / STATE_DIR) == summary["steps"] == max(checkpoints())
    assert job_reads.get_job(job.id).status == JobStatus.CANCELLED


def runner_claim(job_id: int) -> jobs.Claim:
    """The claim of the running attempt 1 (what the supervisor holds)."""
    job = job_reads.get_job(job_id)
    return jobs.Claim(job_id, 1, job.worker)
