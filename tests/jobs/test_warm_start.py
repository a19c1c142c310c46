"""Jobs forked from the worker's warm process keep every guarantee of a fresh process.

The warm process (`python -m worker.forkserver`) imports torch and the job modules
once and forks each job. These tests check what that must not change: the job runs in a
session of its own and writes to its log; exit codes mean the same; a job never outlives
its worker or its warm process; each job sees the worker's environment and builds its own
settings and engines; and neither the worker nor the warm process touches CUDA (a CUDA
context does not survive a fork). `WARM_JOBS=0` starts a fresh Python per job instead.

Most run the runner in this process (this process plays the worker), on SQLite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from shared import db, job_reads, jobs, submit
from shared.contracts.specs import GenerateSpec
from shared.models import Checkpoint, Job, JobStatus, SampleSet
from shared.settings import get_settings
from tests.jobs.helpers import REPO, reset_process_caches, tiny_train_spec, wait_for, write_dataset
from worker import forkserver, runner
from worker.stopping import EXIT_STOPPED

embedded = pytest.mark.parametrize("job_env", ["embedded"], indirect=True)


@pytest.fixture(scope="module", autouse=True)
def _stop_warm_process():
    yield
    forkserver.stop_warm_process()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def _claim(job: Job) -> jobs.Claim:
    claim = jobs.claim(job.id, "t@test")
    assert claim is not None
    return claim


def _run_in_thread(job_id: int, **kwargs) -> tuple[threading.Thread, list[str]]:
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(runner.run(job_id, "t@test", **kwargs)))
    thread.start()
    return thread, result


# The start of every probe: records (in `calls`) everything that would initialise the CUDA
# driver or a context (is_available and device_count initialise the driver too), wrapped
# before anything else imports torch.cuda.
CUDA_RECORDER = """
import json, torch
calls = []
def recorder(name, real):
    def wrapper(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)
    return wrapper
for name in ("is_available", "device_count", "init", "_lazy_init", "current_device",
             "set_device", "get_device_properties", "get_device_capability",
             "get_device_name", "mem_get_info", "synchronize"):
    setattr(torch.cuda, name, recorder(name, getattr(torch.cuda, name)))
"""

PRELOAD_PROBE = (
    CUDA_RECORDER
    + """
from shared import db
from shared.settings import get_settings
from worker.forkserver import preload
preload()
print(json.dumps({
    "calls": calls,
    "initialized": torch.cuda.is_initialized(),
    "engines": len(db._ENGINES),
    "settings_read": get_settings.cache_info().currsize,
}))
"""
)


def test_preloading_touches_neither_cuda_nor_the_database():
    out = subprocess.run(
        [sys.executable, "-c", PRELOAD_PROBE], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe == {"calls": [], "initialized": False, "engines": 0, "settings_read": 0}


JUDGE_PROBE = (
    CUDA_RECORDER
    + """
from shared import db
from worker.bodies import quality
from worker.forkserver import preload, preload_judge
preload()
preload_judge()
judge = quality._LOADED["smollm2-135m"]
print(json.dumps({
    "calls": calls,
    "initialized": torch.cuda.is_initialized(),
    "engines": len(db._ENGINES),
    "preloaded": judge.preloaded,
    "device": str(judge.model.device),
    "threads": torch.get_num_threads(),
}))
"""
)


def test_preloading_the_judge_touches_neither_cuda_nor_the_database(packaged_judge):
    env = {**os.environ, "WORKER_PRELOAD_JUDGE": "smollm2-135m", "OMP_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", JUDGE_PROBE],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe == {
        "calls": [],
        "initialized": False,
        "engines": 0,
        "preloaded": True,
        "device": "cpu",
        "threads": 2,  # loaded on one thread, then given back
    }


LATE_JUDGE_PROBE = """
import json, shutil, sys
from worker.bodies import quality
from worker.forkserver import preload_judge
first = preload_judge()
quiet = preload_judge(again=True)
shutil.copytree(sys.argv[1], sys.argv[2])  # what the first generation job's conversion leaves
after = preload_judge(again=True)
print(json.dumps([first, quiet, after, "smollm2-135m" in quality._LOADED]))
"""


def test_a_judge_converted_after_the_warm_process_started_is_preloaded_then(
    packaged_judge, tmp_path
):
    from worker.diffusion.packaged_judge import cached_judge_dir

    converted = cached_judge_dir("smollm2-135m", Path(os.environ["JUDGE_CACHE_DIR"]))
    cache = tmp_path / "judges"  # empty: as on a machine that never converted it
    env = {**os.environ, "WORKER_PRELOAD_JUDGE": "smollm2-135m", "JUDGE_CACHE_DIR": str(cache)}
    run = subprocess.run(
        [sys.executable, "-c", LATE_JUDGE_PROBE, str(converted), str(cache / converted.name)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    # Not converted: reported once, tried again quietly; converted: preloaded, no more tries.
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [True, True, False, True]
    said = [line for line in run.stderr.splitlines() if line.startswith("warm process:")]
    assert len(said) == 2 and "not converted" in said[0] and "preloaded in" in said[1]


def test_the_celery_worker_process_does_not_import_torch():
    code = (
        "import sys; import worker.app, worker.tasks, worker.runner; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)


@embedded
def test_a_warm_job_runs_in_its_own_session_and_writes_its_log(job_env):
    job = submit.submit_train(tiny_train_spec(job_env, max_steps=300, save_every=1000))
    thread, result = _run_in_thread(job.id, warm=True)
    pid_file = runner.pid_path(job.id, 1)
    pid = int(wait_for(lambda: pid_file.is_file() and pid_file.read_text(), 120, 0.05))
    warm = forkserver.warm_process()
    assert warm is not None and _ppid(pid) == warm.proc.pid  # forked, not a fresh Python
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid  # session and group leader
    assert os.getsid(warm.proc.pid) != os.getsid(os.getpid())  # the worker's signals miss it
    thread.join(120)
    assert result == ["succeeded"], job_reads.get_job(job.id).error
    assert not pid_file.exists()


@embedded
def test_warm_exit_codes_mean_what_fresh_ones_do(job_env):
    warm = forkserver.warm_process()
    assert warm is not None
    long_spec = tiny_train_spec(job_env, max_steps=100000, save_every=100000)

    # SIGTERM to the group: the job stops at its next step, saves, exits EXIT_STOPPED.
    claim = _claim(submit.submit_train(long_spec))
    proc = runner.start_job(claim, warm)
    wait_for(lambda: job_reads.get_job(claim.job_id).progress > 0, 120, what="training to start")
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == EXIT_STOPPED
    log = runner.log_path(claim.job_id, 1).read_text()  # stdout and stderr land here
    assert f"job {claim.job_id} stopped on request" in log

    # SIGKILL: reported as a negative signal number, as subprocess does.
    claim = _claim(submit.submit_train(long_spec))
    proc = runner.start_job(claim, warm)
    wait_for(lambda: job_reads.get_job(claim.job_id).progress > 0, 120, what="training to start")
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL

    # An exception: exit 1, the job failed with a line naming its input, the traceback logged.
    failing = submit.submit_train(tiny_train_spec(job_env, max_steps=4))
    Path(failing.spec["dataset"]).unlink()
    assert runner.run(failing.id, "t@test", warm=True) == "failed"
    error = job_reads.get_job(failing.id).error
    assert error.startswith(f"dataset {failing.spec['dataset']} cannot be used: "), error
    assert f"job {failing.id} failed\nTraceback" in runner.log_path(failing.id, 1).read_text()


@embedded
def test_a_job_takes_the_workers_environment_of_now_not_the_warm_process(
    job_env, tmp_path, monkeypatch
):
    warm = forkserver.warm_process()  # started (or kept from an earlier test) under this env
    assert warm is not None
    # The worker's settings change after the warm process started: a new data folder and
    # database. The job must use them, as a fresh process would.
    other = tmp_path / "other"
    monkeypatch.setenv("DATA_DIR", str(other))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{other / 'td.db'}")
    reset_process_caches()
    db.upgrade()
    dataset = write_dataset(other)
    job = submit.submit_train(tiny_train_spec(dataset, max_steps=4, eval_every=100))
    assert runner.run(job.id, "t@test", warm=True) == "succeeded", job_reads.get_job(job.id).error
    assert forkserver.warm_process() is warm  # the same warm process ran it
    assert runner.log_path(job.id, 1).is_relative_to(other)
    assert job_reads.get_job(job.id).status == JobStatus.SUCCEEDED


@embedded
def test_a_job_dies_with_its_warm_process(job_env):
    warm = forkserver.warm_process()
    assert warm is not None
    claim = _claim(submit.submit_train(tiny_train_spec(job_env, max_steps=100000)))
    proc = runner.start_job(claim, warm)
    wait_for(lambda: job_reads.get_job(claim.job_id).progress > 0, 120, what="training to start")
    warm.proc.kill()
    assert proc.wait(30) == -signal.SIGKILL
    wait_for(lambda: not _alive(proc.pid), 10, 0.1, what="the job process to die")
    # The next job starts a new warm process.
    fresh = forkserver.warm_process()
    assert fresh is not None and fresh is not warm


@embedded
def test_a_killed_worker_leaves_no_job_running(job_env, workers):
    worker = workers("w1")
    job = submit.submit_train(tiny_train_spec(job_env, max_steps=100000, save_every=100000))
    pid_file = runner.pid_path(job.id, 1)
    pid = int(wait_for(lambda: pid_file.is_file() and pid_file.read_text(), 120, 0.05))
    warm_pid = _ppid(pid)
    assert warm_pid != worker.proc.pid and _ppid(warm_pid) == worker.proc.pid
    worker.kill()
    wait_for(lambda: not _alive(warm_pid), 10, 0.1, what="the warm process to exit")
    wait_for(lambda: not _alive(pid), 10, 0.1, what="the job process to die")


@embedded
def test_fresh_processes_when_asked_or_when_the_warm_one_is_gone(job_env, monkeypatch):
    monkeypatch.setenv("WARM_JOBS", "0")
    get_settings.cache_clear()  # a setting: read once per process
    assert not runner.warm_enabled()
    monkeypatch.setenv("WARM_JOBS", "1")
    get_settings.cache_clear()
    assert runner.warm_enabled()

    job = submit.submit_train(tiny_train_spec(job_env, max_steps=200, save_every=1000))
    thread, result = _run_in_thread(job.id, warm=False)
    pid_file = runner.pid_path(job.id, 1)
    pid = int(wait_for(lambda: pid_file.is_file() and pid_file.read_text(), 120, 0.05))
    assert _ppid(pid) == os.getpid() and os.getsid(pid) == pid  # a fresh child of ours
    thread.join(120)
    assert result == ["succeeded"], job_reads.get_job(job.id).error

    gone = forkserver.WarmProcess()
    gone.close(kill=True)
    wait_for(lambda: gone.gone, 10, 0.05, what="the reader to see it exit")
    claim = _claim(submit.submit_train(tiny_train_spec(job_env, max_steps=4, eval_every=100)))
    proc = runner.start_job(claim, gone)
    assert isinstance(proc, subprocess.Popen) and proc.wait(120) == 0


@embedded
def test_generation_jobs_judge_with_the_judge_their_warm_process_preloaded(
    job_env, monkeypatch, packaged_judge
):
    forkserver.stop_warm_process()  # the next one starts with this test's settings
    monkeypatch.setenv("WORKER_PRELOAD_JUDGE", "smollm2-135m")
    get_settings.cache_clear()
    train = submit.submit_train(tiny_train_spec(job_env))
    thread, result = _run_in_thread(train.id, warm=True)
    thread.join(180)
    assert result == ["succeeded"], job_reads.get_job(train.id).error
    with db.session_scope() as s:
        ckpt = s.scalars(
            select(Checkpoint)
            .where(Checkpoint.run_id == train.run_id)
            .order_by(Checkpoint.step.desc())
        ).first()
        ckpt_id = ckpt.id

    judges = {"smollm2-135m": "preloaded by the warm process", None: None}
    for judge, said in judges.items():
        spec = GenerateSpec(checkpoint=ckpt_id, length=8, num_samples=2, judge=judge)
        gen = submit.submit_generate(spec)
        thread, result = _run_in_thread(gen.id, warm=True)
        thread.join(180)
        assert result == ["succeeded"], job_reads.get_job(gen.id).error
        log = get_settings().job_log(gen.id, 1).read_text()
        with db.session_scope() as s:
            metrics = [
                x.metrics for x in s.scalars(select(SampleSet).where(SampleSet.job_id == gen.id))
            ]
        if said:
            assert f"judge {judge}: {said}" in log
            assert all(m["judge"] == judge and m["judge_ppl"] > 1.0 for m in metrics)
        else:
            assert "judge" not in log.lower() and all(m["judge_ppl"] is None for m in metrics)
    forkserver.stop_warm_process()
