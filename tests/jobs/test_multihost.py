"""Workers on other machines, simulated with network namespaces (tests/netns.py).

Three "machines" on one segment of loopback-range addresses:

    svc   127.1.0.1   a throwaway PostgreSQL and Redis of this test's own; the test itself
                      runs its thread here, as a CLI on the services machine would
    hostA 127.1.0.2   `text-diffusion worker --queues cpu`  (hostname hostA)
    hostB 127.1.0.3   `text-diffusion worker --queues cpu`  (hostname hostB)

Each host has its own DATA_DIR (job working folders, logs); what they share is what
machines share: DATABASE_URL, REDIS_URL, and ARTIFACT_URL, here a file:// folder standing
in for a shared store (an s3:// URL goes through the same fsspec calls), and the dataset
at the same path under DATASET_ROOT.

Checked: a training job's checkpoint, written on one host, is read by a generation job on
the other; jobs spread over both workers; and a host cut off the network mid-job (its
cable unplugged: packets dropped, not refused) loses the job to the other host, which
resumes it from the last checkpoint once the heartbeat is stale (STALE_AFTER_SECONDS=3).

Cost: about a minute on a quiet 2-core machine (two idle workers, four small jobs, each
job process importing torch). Needs root, `ip netns`, PostgreSQL's initdb and
redis-server; skipped without them, failed instead under TD_REQUIRE_SERVICES=1.
Everything it creates (namespaces, processes in them, servers, folders) goes at teardown,
even on failure; `netns.sweep` removes what a killed run left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import db, job_reads, submit
from shared.contracts.specs import GenerateSpec
from shared.models import Checkpoint, Job, JobStatus, LossPoint, Run, SampleSet, WorkerState
from shared.workers import display_state, get_worker, list_workers
from tests import netns
from tests.jobs.helpers import (
    FAST_SETTINGS,
    REPO,
    replayed_steps,
    reset_process_caches,
    tiny_train_spec,
    wait_for,
    write_dataset,
)
from tests.services import require_or_skip

pytestmark = pytest.mark.slow

HOSTS = ("hostA", "hostB")


@dataclass
class Machines:
    net: netns.Network
    dataset: Path
    data_dirs: dict[str, Path]  # host -> its own DATA_DIR
    logs: dict[str, Path]  # host -> its worker's output

    @staticmethod
    def worker(host: str) -> str:
        return f"celery@{host}"  # Celery's default name: celery@HOSTNAME

    @staticmethod
    def host(worker: str) -> str:
        return worker.split("@", 1)[1]

    def tails(self) -> str:
        """The end of every worker's output and job logs, for a failure message."""
        parts = []
        for host in HOSTS:
            files = [self.logs[host], *sorted((self.data_dirs[host] / "work/logs").glob("*"))]
            for path in filter(Path.is_file, files):
                parts.append(f"--- {host}: {path.name}\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    def finished(self, job_id: int, timeout: float) -> Job:
        def check() -> Job | None:
            job = job_reads.get_job(job_id)
            return job if JobStatus(job.status).finished else None

        try:
            return wait_for(check, timeout, 0.3, what=f"job {job_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None


@pytest.fixture
def machines(tmp_path, monkeypatch) -> Iterator[Machines]:
    for why in (netns.unavailable(), netns.services_missing()):
        if why:
            require_or_skip("network namespaces for the multi-host test", None, why)
    netns.sweep()
    shared = tmp_path / "shared"  # what every host mounts at the same path
    env = {
        **FAST_SETTINGS,
        "ARTIFACT_URL": (shared / "artifacts").as_uri(),
        "DATASET_ROOT": str(shared / "datasets"),
        "REDIS_KEY_PREFIX": "",  # a Redis of our own
    }
    with (
        netns.Network(["svc", *HOSTS]) as net,
        netns.postgres_server(net, "svc") as database_url,
        netns.redis_server(net, "svc") as redis_url,
        net.entered("svc"),
    ):
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url)
        for key, value in {**env, "DATA_DIR": str(tmp_path / "client")}.items():
            monkeypatch.setenv(key, value)
        reset_process_caches()
        try:
            db.upgrade()
            m = Machines(net, write_dataset(shared), {}, {})
            for host in HOSTS:
                m.data_dirs[host] = tmp_path / host
                m.logs[host] = tmp_path / f"{host}.log"
                with m.logs[host].open("ab") as out:
                    net.popen(
                        host,
                        [sys.executable, "-m", "text_diffusion.cli", "worker", "--queues", "cpu"],
                        env={**os.environ, **env, "DATA_DIR": str(m.data_dirs[host])},
                        cwd=REPO,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
            yield m
        finally:
            # Before leaving svc: its connections stay in svc, which is about to go.
            reset_process_caches()
    # Workers and job processes are killed with their namespaces, at Network's exit.


def test_checkpoints_cross_hosts_jobs_spread_and_a_cut_off_host_loses_its_job(machines):
    m = machines

    def online() -> bool:
        rows = [w for w in list_workers() if w.state == WorkerState.ONLINE]
        return len(rows) == len(HOSTS)

    try:
        wait_for(online, 90, what="both workers online")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{m.tails()}") from None
    assert {(w.name, w.host, w.device) for w in list_workers()} == {
        (m.worker(h), h, "cpu") for h in HOSTS
    }

    # 1. Train on whichever host takes it; its checkpoint goes to the shared store.
    train = submit.submit_train(tiny_train_spec(m.dataset, max_steps=10, eval_every=10))
    train = m.finished(train.id, 120)
    assert train.status == JobStatus.SUCCEEDED, train.error
    trainer = train.worker
    with db.session_scope() as s:
        ckpt = s.scalars(
            select(Checkpoint).where(Checkpoint.run_id == train.run_id).order_by(Checkpoint.step)
        ).all()[-1]
    assert ckpt.url.startswith(os.environ["ARTIFACT_URL"] + "/")

    # 2. Two generation jobs at once with both workers idle: each worker takes one (a
    # worker holds one unacknowledged message at a time), so one runs on the other host.
    spec = GenerateSpec(
        checkpoint=ckpt.id, prompts=["The king"], length=8, num_samples=1, judge=None
    )
    gens = [submit.submit_generate(spec).id for _ in range(2)]
    gens = [m.finished(g, 120) for g in gens]
    assert all(g.status == JobStatus.SUCCEEDED for g in gens), [g.error for g in gens]
    assert {g.worker for g in gens} == {m.worker(h) for h in HOSTS}, "not spread"
    (elsewhere,) = [g for g in gens if g.worker != trainer]
    with db.session_scope() as s:
        sets = s.scalars(select(SampleSet).where(SampleSet.job_id == elsewhere.id)).all()
    assert [ss.checkpoint_id for ss in sets] == [ckpt.id]
    # The run's working folder exists on the training host only: the other read the
    # checkpoint through ARTIFACT_URL.
    run_dir = Path("work") / f"run-{train.run_id}"
    assert (m.data_dirs[m.host(trainer)] / run_dir).is_dir()
    assert not (m.data_dirs[m.host(elsewhere.worker)] / run_dir).exists()

    # 3. A long job; once it has a checkpoint, unplug the host running it. The other
    # host's reconciler sees the stale heartbeat, queues it again, and resumes it.
    spec = tiny_train_spec(m.dataset, max_steps=120, save_every=20, eval_every=1000)
    long = submit.submit_train(spec)

    def checkpointed() -> bool:
        with db.session_scope() as s:
            # Two rows: the first one's state is published by then (a row precedes its state).
            return s.scalar(select(func.count()).where(Checkpoint.run_id == long.run_id)) >= 2

    wait_for(checkpointed, 120, what="the long job's first two checkpoints")
    victim = job_reads.get_job(long.id).worker
    assert job_reads.get_job(long.id).status == JobStatus.RUNNING, "finished before the cut"
    (survivor,) = {m.worker(h) for h in HOSTS} - {victim}
    m.net.cut(m.host(victim))

    done = m.finished(long.id, 150)
    assert done.status == JobStatus.SUCCEEDED, f"{done.error}\n{m.tails()}"
    assert done.worker == survivor and done.attempts == 2
    with db.session_scope() as s:
        run = s.get(Run, long.run_id)
        steps = s.scalars(select(LossPoint.step).where(LossPoint.run_id == long.run_id)).all()
    assert run.summary["resumed_from_step"] >= 20 and run.step == 120
    assert sorted(steps) == list(range(2, 121, 2))  # none lost
    # Written twice: only steps after the checkpoint the survivor resumed from, once more.
    replayed = replayed_steps(long.id, [m.data_dirs[h] / "work" for h in HOSTS])
    resumed = run.summary["resumed_from_step"]
    assert len(set(replayed)) == len(replayed)
    assert all(resumed < step <= resumed + 20 for step in replayed), replayed
    assert display_state(get_worker(victim)) == "lost"
    assert display_state(get_worker(survivor)) == "online"
