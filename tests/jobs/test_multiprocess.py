"""Multi-process training over real processes: a job with num_processes=2 runs through
`accelerate launch` (gloo on the CPU), records what a single-process run records, stops
all its ranks on cancel, resumes across ranks on retry, and leaves no rank behind when its
process is killed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from shared import db, jobs, submit
from shared.models import Checkpoint, EvalPoint, JobStatus, LossPoint, Run
from shared.settings import get_settings
from tests.jobs.helpers import replayed_steps, tiny_train_spec, wait_for
from tests.jobs.test_flow import finished
from worker.bodies.run_state import STATE_DIR, saved_step


def rank_pids(output_dir: Path) -> list[int]:
    """Processes running a rank of the run whose output directory is `output_dir` (unique to
    this test: it lives under the test's DATA_DIR)."""
    launchers = set(launcher_pids(output_dir))  # their command line names the module too
    ranks = _pids_with(b"worker.train_rank", str(output_dir).encode())
    return [pid for pid in ranks if pid not in launchers]


def run_rows(run_id: int):
    with db.session_scope() as s:
        run = s.get(Run, run_id)
        losses = s.execute(
            select(LossPoint.step, LossPoint.loss)
            .where(LossPoint.run_id == run_id)
            .order_by(LossPoint.step)
        ).all()
        evals = s.scalars(select(EvalPoint.ratio).where(EvalPoint.run_id == run_id)).all()
        ckpts = s.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run_id)).all()
        s.expunge(run)
    return run, [tuple(r) for r in losses], sorted(evals), sorted(ckpts)


def output_dir(run_id: int) -> Path:
    return get_settings().work_dir / f"run-{run_id}"


def test_two_processes_record_what_one_records(job_env, workers):
    workers("w1")
    one = submit.submit_train(tiny_train_spec(job_env), name="one")
    two = submit.submit_train(tiny_train_spec(job_env, num_processes=2), name="two")
    for job in (one, two):
        done = wait_for(finished(job.id), 240, what=f"training job {job.id}")
        assert done.status == JobStatus.SUCCEEDED, done.error
    run1, losses1, evals1, ckpts1 = run_rows(one.run_id)
    run2, losses2, evals2, ckpts2 = run_rows(two.run_id)

    # The same rows: every logged step, every ratio at every evaluation, each checkpoint.
    assert [s for s, _ in losses2] == [s for s, _ in losses1] == list(range(2, 21, 2))
    assert evals2 == evals1 and len(evals2) == 2 * 3
    assert ckpts2 == ckpts1 == [10, 20]
    assert run2.step == 20 and run2.tokens_seen == run1.tokens_seen
    assert run2.summary["num_processes"] == 2 and run1.summary["num_processes"] == 1
    # The same masked batches, split over two ranks: the same training but for dropout,
    # whose masks each rank draws for its half (seen: at most 0.2% apart over 10 points).
    for (_, a), (_, b) in zip(losses1, losses2, strict=True):
        assert abs(a - b) < 0.01 * a, (losses1, losses2)
    bound1, bound2 = run1.summary["nll_bound"], run2.summary["nll_bound"]
    assert abs(bound1 - bound2) < 0.01 * bound1

    log = get_settings().job_log(two.id, 1).read_text()
    assert "accelerate launch: 2 processes on the CPU (gloo)" in log
    assert "rank 1 of 2" in log and "rank 0 of 2" in log
    assert not rank_pids(output_dir(two.run_id))


def launcher_pids(output_dir: Path) -> list[int]:
    """`accelerate launch` processes of the run in `output_dir`."""
    return _pids_with(b"accelerate.commands.launch", str(output_dir).encode())


def _pids_with(*parts: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(part in argv for part in parts):
            pids.append(int(entry.name))
    return pids


def run_step(run_id: int) -> int:
    with db.session_scope() as s:
        return s.get(Run, run_id).step or 0


@pytest.mark.parametrize("job_env", ["services"], indirect=True)
def test_cancel_stops_every_rank_and_retry_resumes(job_env, workers):
    workers("w1")
    spec = tiny_train_spec(job_env, num_processes=2, max_steps=600, save_every=50, eval_every=1000)
    job = submit.submit_train(spec, name="cancel me")
    wait_for(lambda: run_step(job.run_id) >= 20, 120, what="20 steps in two processes")
    jobs.cancel(job.id)
    done = wait_for(finished(job.id), 60, what="the cancelled job")
    assert done.status == JobStatus.CANCELLED, done.error
    out = output_dir(job.run_id)
    wait_for(lambda: not rank_pids(out) and not launcher_pids(out), 15, what="ranks gone")
    stopped_at = saved_step(out / STATE_DIR)
    assert 20 <= stopped_at < 600  # both ranks stopped at the same step and saved it

    jobs.retry(job.id)
    done = wait_for(finished(job.id), 240, what="the retried job")
    assert done.status == JobStatus.SUCCEEDED, done.error
    run, losses, _, ckpts = run_rows(job.run_id)
    assert run.step == 600 and run.summary["resumed_from_step"] == stopped_at
    assert [step for step, _ in losses] == list(range(2, 601, 2))  # none lost
    assert replayed_steps(job.id) == []  # none written twice: it resumed where it stopped
    assert 600 in ckpts and stopped_at in ckpts


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_killed_job_leaves_no_rank_behind(job_env, workers):
    w = workers("w1")
    spec = tiny_train_spec(job_env, num_processes=2, max_steps=100_000, eval_every=100_000)
    job = submit.submit_train(spec, name="kill me")
    out = output_dir(job.run_id)
    wait_for(lambda: run_step(job.run_id) >= 4, 120, what="4 steps in two processes")
    ranks, launcher = rank_pids(out), launcher_pids(out)
    assert len(ranks) == 2 and len(launcher) == 1
    w.kill_job(job.id, 1)  # SIGKILL the job's process alone, as the OOM killer would
    # (The worker then starts attempt 2, with processes of its own: watch these pids.)
    wait_for(lambda: not any(alive(p) for p in ranks + launcher), 15, what="ranks gone")
    jobs.cancel(job.id)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_failing_rank_fails_the_job_with_its_error(job_env, workers):
    workers("w1")
    encoder = job_env.parent.parent / "models" / "encoder"  # under MODEL_ROOT, no config.json
    encoder.mkdir(parents=True)
    spec = tiny_train_spec(job_env, num_processes=2, model=str(encoder))
    job = submit.submit_train(spec, name="bad model")
    done = wait_for(finished(job.id), 120, what="the failing job")
    assert done.status == JobStatus.FAILED
    assert "accelerate launch exited with code 1 before rank 0 finished" in done.error
    assert "rank-0:" in done.error and "holds no config.json" in done.error
