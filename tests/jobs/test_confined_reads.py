"""A dataset file swapped for a link out of DATASET_ROOT after its submit check is never
read: the job's process checks every file as it opens it (`worker.diffusion.confine`), and
the job fails with one line. The runner runs here and starts the job as a fresh process."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared import job_reads, submit
from shared.db import session_scope
from shared.models import JobStatus, LossPoint
from tests.jobs.helpers import tiny_train_spec
from worker import runner

pytestmark = pytest.mark.parametrize("job_env", ["embedded"], indirect=True)


def test_a_file_swapped_for_a_link_after_submit_is_refused(job_env, tmp_path):
    dataset = job_env  # DATASET_ROOT/corpus.txt
    outside = tmp_path / "outside.txt"
    outside.write_text("root:x:0:0:root:/root:/bin/bash nologin sbin daemon\n" * 200)
    job = submit.submit_train(tiny_train_spec(dataset, max_steps=4))  # a real file: accepted
    dataset.unlink()
    dataset.symlink_to(outside)

    assert runner.run(job.id, "t@test", warm=False) == "failed"
    row = job_reads.get_job(job.id)
    assert row.status == JobStatus.FAILED
    first = row.error.splitlines()[0]
    assert first.startswith(f"dataset {dataset} cannot be used: ")
    assert "leads outside the data root" in first
    assert "Traceback" not in row.error
    with session_scope() as s:  # nothing was trained on it
        assert s.scalar(select(func.count()).where(LossPoint.run_id == job.run_id)) == 0
