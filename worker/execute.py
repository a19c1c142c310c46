"""The job body's process: `python -m worker.execute JOB_ID ATTEMPT WORKER`.

Started by `worker.runner` in its own session. Loads the job, runs the body for its kind,
and exits with 0 (done), 1 (an exception; the traceback goes to the log's `.error` file),
or `EXIT_STOPPED` (stopped on request, state saved).

Two guards make it safe to leave running: SIGTERM asks it to stop at the next step (as a
cancel does), and if its parent (the worker's runner) dies it kills its own process group,
so a SIGKILLed worker never leaves a job running that the reconciler will start again.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback

from shared import jobs
from shared.db import retry_on_disconnect, session_scope
from shared.models import Job, JobKind
from worker.runner import EXIT_STOPPED, log_path
from worker.stopping import StopControl, Stopped

log = logging.getLogger("worker.execute")


def _watch_parent() -> None:
    """Kill our process group when the runner that started us is gone."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            time.sleep(0.5)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def use_device(device: str) -> None:
    """Make torch see the device the spec asks for; call before torch is imported."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a GPU worker that serves the cpu queue too
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                "the spec asks for device 'cuda' but this worker has no usable GPU "
                "(start workers without one on the cpu queue only)"
            )


@retry_on_disconnect
def load_job(job_id: int) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None, f"job {job_id} vanished"
        return job


def run_body(claim: jobs.Claim, stop: StopControl) -> None:
    job = load_job(claim.job_id)
    use_device(job.spec.get("device", "auto"))
    if job.kind == JobKind.TRAIN:
        from worker.train_job import run_train

        run_train(claim, job, stop)
    elif job.kind == JobKind.GENERATE:
        from worker.generate_job import run_generate

        run_generate(claim, job, stop)
    else:
        from worker.evaluate_job import run_evaluate

        run_evaluate(claim, job, stop)


def main(argv: list[str]) -> int:
    job_id, attempt, worker = int(argv[0]), int(argv[1]), argv[2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _watch_parent()
    claim = jobs.Claim(job_id, attempt, worker, JobKind.TRAIN)  # kind is read from the row
    stop = StopControl(claim)
    stop.install()
    try:
        run_body(claim, stop)
    except Stopped:
        log.info("job %s stopped on request", job_id)
        return EXIT_STOPPED
    except Exception:
        text = traceback.format_exc()
        log.error("job %s failed\n%s", job_id, text)
        log_path(job_id, attempt).with_suffix(".error").write_text(text)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
