"""A model source of each confined kind, run by a real worker: a checkpoint of this store
(by id) fine-tunes into a new run, and a job row whose model escapes MODEL_ROOT (stored
before the rule, or edited since) fails with the reason before anything is loaded."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from shared import db, submit
from shared.models import Checkpoint, Job, JobStatus, Run
from tests.jobs.helpers import tiny_train_spec, wait_for
from tests.jobs.test_flow import finished


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_checkpoint_as_model_and_a_stored_model_outside_the_root(job_env, workers):
    first = submit.submit_train(tiny_train_spec(job_env, max_steps=10), name="base")
    bad = submit.submit_train(tiny_train_spec(job_env, max_steps=10), name="tampered")
    with db.session_scope() as s:  # before any worker runs: as a row stored long ago
        spec = {**s.get(Job, bad.id).spec, "model": "/etc"}
        s.execute(update(Job).where(Job.id == bad.id).values(spec=spec))
    workers("w1")
    assert wait_for(finished(first.id), 120, what="base run").status == JobStatus.SUCCEEDED
    done = wait_for(finished(bad.id), 120, what="tampered run")
    assert done.status == JobStatus.FAILED
    assert "outside the model root" in done.error

    with db.session_scope() as s:
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.run_id == first.run_id)).one()
        ckpt_id, ckpt_url = ckpt.id, ckpt.url
    tuned = submit.submit_train(tiny_train_spec(job_env, model=str(ckpt_id)), name="tuned")
    with db.session_scope() as s:
        assert s.get(Run, tuned.run_id).spec["model"] == ckpt_url  # pinned as its URL
    done = wait_for(finished(tuned.id), 120, what="run from a checkpoint")
    assert done.status == JobStatus.SUCCEEDED, done.error
