"""The core path over real processes: submit a training job -> a worker runs it -> loss
points, per-ratio evaluations, the bound and checkpoints are in the database -> submit a
generation grid -> one sample set per combination. In embedded mode (SQLite, filesystem
broker) and services mode (PostgreSQL, Redis)."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select

from shared import db, job_reads, submit
from shared.contracts.specs import EvalSpec, GenerateSpec
from shared.models import Checkpoint, EvalPoint, JobStatus, LossPoint, Run, Sample, SampleSet
from tests.jobs.helpers import tiny_train_spec, wait_for


def finished(job_id: int):
    def check():
        job = job_reads.get_job(job_id)
        return job if JobStatus(job.status).finished else None

    return check


def test_train_then_generate_then_evaluate(job_env, workers):
    workers("w1")
    job = submit.submit_train(tiny_train_spec(job_env), name="flow")
    assert job.status == JobStatus.QUEUED
    done = wait_for(finished(job.id), 120, what="training job")
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.attempts == 1 and done.progress == 1.0

    with db.session_scope() as s:
        run = s.get(Run, job.run_id)
        steps = s.scalars(select(LossPoint.step).where(LossPoint.run_id == run.id)).all()
        ratios = s.scalars(select(EvalPoint.ratio).where(EvalPoint.step == 20)).all()
        ckpts = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id)).all()
    assert run.status == JobStatus.SUCCEEDED and run.step == 20
    assert sorted(steps) == list(range(2, 21, 2))
    assert sorted(ratios) == [0.2, 0.5, 1.0]
    assert run.summary["ppl_bound"] > 1.0 and run.summary["nll_bound"] > 0.0
    assert [c.step for c in ckpts] == [10, 20]

    spec = GenerateSpec(
        checkpoint=ckpts[-1].id,
        prompts=["The king", ""],
        grid={"schedules": ["linear", "cosine"], "strategies": ["confidence", "random"]},
        length=8,
        num_samples=2,
        judge=None,  # judging is tested in test_judged_generation.py
    )
    gen = submit.submit_generate(spec)
    gen = wait_for(finished(gen.id), 90, what="generation job")
    assert gen.status == JobStatus.SUCCEEDED, gen.error
    with db.session_scope() as s:
        sets = s.scalars(select(SampleSet).where(SampleSet.job_id == gen.id)).all()
        n_samples = s.scalar(
            select(func.count(Sample.id)).join(SampleSet).where(SampleSet.job_id == gen.id)
        )
        sample = s.scalars(select(Sample).join(SampleSet).where(SampleSet.job_id == gen.id)).first()
    assert sorted(ss.combination for ss in sets) == [0, 1, 2, 3]
    assert {(ss.settings["schedule"], ss.settings["strategy"]) for ss in sets} == {
        ("linear", "confidence"),
        ("linear", "random"),
        ("cosine", "confidence"),
        ("cosine", "random"),
    }
    assert all("distinct_2" in ss.metrics for ss in sets)
    assert n_samples == 4 * 2 * 2
    steps = sample.trajectory["steps"]
    assert len(steps[0]["tokens"]) == len(sample.trajectory["committed_at"])
    assert None in steps[0]["tokens"] and None not in steps[-1]["tokens"]

    ev = submit.submit_evaluate(EvalSpec(checkpoint=ckpts[0].url, ratios=[0.5, 1.0], batches=1))
    ev = wait_for(finished(ev.id), 90, what="evaluation job")
    assert ev.status == JobStatus.SUCCEEDED, ev.error
    assert ev.result["step"] == 10 and len(ev.result["eval"]) == 2
    assert ev.result["bound"]["perplexity"] > 1.0


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_cuda_job_on_a_worker_without_a_gpu_fails_clearly(job_env, workers):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU")
    workers("w1", queues="gpu")
    job = submit.submit_train(tiny_train_spec(job_env, device="cuda"))
    assert job.queue == "gpu"
    done = wait_for(finished(job.id), 90, what="the job to fail")
    assert done.status == JobStatus.FAILED and "no usable GPU" in done.error
