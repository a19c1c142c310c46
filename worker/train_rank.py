"""One rank of a multi-process training job: `accelerate launch ... -m worker.train_rank DIR`.

DIR is the run's output directory, which holds `LAUNCH_FILE` (written by
`worker.bodies.train`). Every rank builds the same Trainer and trains its share of each batch;
rank 0 alone streams to the database and writes RESULTS_FILE, which tells the job's
process how the training ended. A stop (the cancel flag, read by rank 0, or SIGTERM to any
rank) is agreed by all ranks at the next step, so they save together and exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from shared import jobs
from shared.contracts.specs import TrainSpec
from worker.bodies.train import DatabaseCallback
from worker.diffusion.training import BaseCallback, Callback, Trainer
from worker.launch import JOB_PID_ENV, rank_error_file, read_launch_file
from worker.roots import confine_job_reads
from worker.stopping import StopControl, watch_parent

log = logging.getLogger("worker.train_rank")


class SignalStop(BaseCallback):
    """A rank other than 0: asks the loop to stop once this rank got SIGTERM."""

    def __init__(self) -> None:
        self.event = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: self.event.set())

    def should_stop(self) -> bool:
        return self.event.is_set()


def main(argv: list[str]) -> int:
    output_dir = Path(argv[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The launcher and the job's process: if either is killed, so are we.
    watch_parent(os.getppid(), also=int(os.environ[JOB_PID_ENV]))
    confine_job_reads()
    launch = read_launch_file(output_dir)
    spec = TrainSpec.model_validate(launch["spec"])
    # Joins the process group (gloo when the launch set ACCELERATE_USE_CPU, else NCCL).
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    callbacks: list[Callback]
    if state.is_main_process:
        claim = jobs.Claim(launch["job_id"], launch["attempt"], launch["worker"])
        stop = StopControl(claim)  # the cancel flag, lost ownership, SIGTERM
        stop.install()
        callbacks = [DatabaseCallback(claim, launch["run_id"], spec, stop)]
    else:
        callbacks = [SignalStop()]
    log.info("rank %d of %d on %s", state.process_index, state.num_processes, state.device)
    try:
        summary = Trainer(spec, output_dir, callbacks).train()
    except Exception:
        # The job's error names the rank's exception, not only the launcher's exit code.
        rank_error_file(output_dir, state.process_index).write_text(traceback.format_exc())
        raise
    log.info(
        "rank %d done: %s after %d steps",
        state.process_index,
        summary["stopped_by"],
        summary["steps"],
    )
    state.wait_for_everyone()
    state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
