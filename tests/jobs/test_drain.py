"""A worker's lifecycle beyond start and stop: what it registers, and draining it.

`text-diffusion workers drain NAME` sets a flag in the worker's row; the worker stops
consuming, lets its running job finish (not requeued), exits, and reads "drained". Over
real worker processes, in embedded and services mode.
"""

from __future__ import annotations

import os
import socket
import stat

import pytest

from shared import job_reads, submit
from shared.models import JobStatus, WorkerState
from shared.workers import display_state, get_worker, register, set_state
from tests.jobs.helpers import tiny_train_spec, wait_for
from text_diffusion.cli import main
from worker.maintenance import detect_device

embedded = pytest.mark.parametrize("job_env", ["embedded"], indirect=True)


def test_a_drained_worker_finishes_its_job_and_takes_no_other(job_env, workers, capsys):
    w1 = workers("w1")
    row = get_worker("w1@test")
    assert (row.queues, row.device, row.host) == (["cpu"], detect_device(), socket.gethostname())

    # Long enough to still be running when the drain lands (it takes about a second).
    long = submit.submit_train(tiny_train_spec(job_env, max_steps=250, save_every=1000))
    wait_for(lambda: job_reads.get_job(long.id).progress > 0, 90, what="the first job to train")
    assert main(["workers", "drain", "w1@test"]) == 0
    assert "w1@test: draining" in capsys.readouterr().out
    short = submit.submit_train(tiny_train_spec(job_env, max_steps=4, eval_every=100))

    def draining_while_running() -> bool:
        assert job_reads.get_job(long.id).status == JobStatus.RUNNING, "finished before the drain"
        return get_worker("w1@test").state == WorkerState.DRAINING

    wait_for(draining_while_running, 30, 0.1, what="the worker to start draining")
    assert w1.proc.wait(120) == 0  # it exits by itself once its job is done
    done = job_reads.get_job(long.id)
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 1, done.error
    assert done.worker == "w1@test"
    assert job_reads.get_job(short.id).status == JobStatus.QUEUED  # not taken by the drained one
    row = get_worker("w1@test")
    assert row.state == WorkerState.OFFLINE and row.drain_requested
    assert display_state(row) == "drained"
    assert main(["workers", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["name", "host", "queues", "device", "state", "heartbeat", "job"]
    assert listed[1].split()[:5] == ["w1@test", row.host, "cpu", row.device, "drained"]

    workers("w2")  # a fresh worker takes what the drained one left
    wait_for(lambda: JobStatus(job_reads.get_job(short.id).status).finished, 90, what="job 2")
    later = job_reads.get_job(short.id)
    assert later.status == JobStatus.SUCCEEDED and later.worker == "w2@test", later.error


@embedded
def test_drain_refuses_unknown_and_offline_workers_and_a_start_clears_it(job_env, capsys):
    assert main(["workers", "drain", "nobody@nowhere"]) == 2
    assert "no worker named 'nobody@nowhere'" in capsys.readouterr().err
    register("gone@test", ["cpu"], "cpu")
    set_state("gone@test", WorkerState.OFFLINE)
    assert main(["workers", "drain", "gone@test"]) == 2
    assert "is offline: there is nothing to drain" in capsys.readouterr().err

    register("idle@test", ["cpu"], "cpu")  # no process behind it: the flag is all we see
    assert main(["workers", "drain", "idle@test"]) == 0
    assert "idle@test: draining (idle)" in capsys.readouterr().out
    assert get_worker("idle@test").drain_requested
    assert display_state(get_worker("idle@test")) == "draining"  # before the worker acts
    register("idle@test", ["cpu"], "cpu")  # started again: no longer draining
    assert not get_worker("idle@test").drain_requested
    assert display_state(get_worker("idle@test")) == "online"


@embedded
def test_a_worker_with_an_nvidia_driver_registers_cuda(job_env, workers, tmp_path, monkeypatch):
    """Device routing: cuda jobs go to the gpu queue (tests/jobs/test_states.py); a worker
    says which device it has, so the dashboard shows where a gpu queue can be served. A
    real worker process, with an `nvidia-smi` first on its PATH, registers as cuda."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    workers("gpu1", queues="gpu")
    row = get_worker("gpu1@test")
    assert (row.device, row.queues) == ("cuda", ["gpu"])
    monkeypatch.setenv("PATH", os.devnull)
    assert detect_device() == "cpu"
