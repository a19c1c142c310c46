"""The job's process: `python -m worker.execute JOB_ID ATTEMPT WORKER`, or a fork of the
warm process (`worker.forkserver`), which calls `main` in the child.

Started by `worker.runner` in its own session. Loads the job, runs the body for its kind
(`worker.bodies`), and exits with one of the codes in `worker.stopping`: EXIT_DONE,
EXIT_FAILED (an exception; the user's one-line error and the traceback go to the log's
`.error` file), EXIT_STOPPED (stopped on request, state saved), EXIT_PRUNED, or
EXIT_DISPLACED (the job was given to another attempt: this one's writes were refused).

Two guards make it safe to leave running: SIGTERM asks it to stop at the next step (as a
cancel does), and if its parent (the worker's runner, or the warm process, which exits
with the worker) dies it kills its own process group, so a SIGKILLed worker never leaves
a job running that the reconciler will start again.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from shared import jobs
from shared.contracts.specs import SpecError
from shared.db import retry_on_disconnect, session_scope
from shared.errors import Displaced
from shared.models import Job
from shared.settings import get_settings
from worker.bodies import body_for
from worker.bodies.errors import JobInputError
from worker.roots import confine_job_reads
from worker.stopping import (
    EXIT_DISPLACED,
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_PRUNED,
    EXIT_STOPPED,
    Pruned,
    StopControl,
    Stopped,
    watch_parent,
)

log = logging.getLogger("worker.execute")


def use_device(device: str) -> None:
    """Make torch see the device the spec asks for; call before torch touches CUDA."""
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
    body = body_for(job.kind)
    use_device(job.spec.get("device", "auto"))
    body(claim, job, stop)


def error_text(exc: Exception, trace: str) -> str:
    """The job's error: one line first, then the traceback unless the line says it all (an
    input error: its traceback stays in the log)."""
    if isinstance(exc, JobInputError | SpecError):  # the input, checked again here
        return f"{exc}\n(the traceback is in the job's log)"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}\n\n{trace}" if first else trace


def main(argv: list[str], *, parent: int | None = None) -> int:
    """Run attempt ATTEMPT of job JOB_ID for WORKER (`argv`); return the exit code.

    `parent`: the process whose death must kill this job (default: our parent now).
    """
    job_id, attempt, worker = int(argv[0]), int(argv[1]), argv[2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    watch_parent(os.getppid() if parent is None else parent)
    claim = jobs.Claim(job_id, attempt, worker)
    stop = StopControl(claim)
    stop.install()
    try:
        confine_job_reads()
        run_body(claim, stop)
    except Displaced as exc:
        log.warning("job %s: stopping, %s", job_id, exc)
        return EXIT_DISPLACED
    except Pruned:
        log.info("job %s pruned by its sweep", job_id)
        return EXIT_PRUNED
    except Stopped:
        log.info("job %s stopped on request", job_id)
        return EXIT_STOPPED
    except Exception as exc:
        text = traceback.format_exc()
        log.error("job %s failed\n%s", job_id, text)
        get_settings().job_log(job_id, attempt).with_suffix(".error").write_text(
            error_text(exc, text)
        )
        return EXIT_FAILED
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
