"""Multi-process training through `accelerate launch`: the command, its port, its ranks.

    training job (num_processes = N)
      -> write LAUNCH_FILE (spec, claim) into the run's output directory
      -> python -m accelerate.commands.launch --multi_gpu --num_processes N
             --main_process_port PORT -m worker.train_rank OUTPUT_DIR
             (a port of its own per job; on CPU the ranks use gloo, on GPUs NCCL)
      -> rank 0 streams to the database, every rank trains its share of each batch
      -> rank 0's RESULTS_FILE says how it ended

The launcher is a child of the job's process, in its process group, so the runner's
SIGTERM (cancel, shutdown) reaches it; it passes the signal on to the ranks (torch's
elastic agent starts each in a session of its own) and SIGKILLs them 30 s later. A rank
whose launcher or job process is gone kills itself, so a SIGKILLed job leaves no rank
behind.

Only rank 0 touches the database; the others read the spec from LAUNCH_FILE. Nothing in
this module imports torch: it also runs in the CLI before the ranks start.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LAUNCH_FILE = "launch.json"  # what each rank of a job needs: the spec and the claim
JOB_PID_ENV = "TD_LAUNCHED_BY"  # pid of the process that ran `accelerate launch`


def free_port() -> int:
    """A TCP port free on this machine now, for one job's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_launched_rank() -> bool:
    """True inside a process that `accelerate launch` (torchrun) started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_command(
    num_processes: int, port: int, module: str, args: list[str], *, cpu: bool
) -> list[str]:
    """`accelerate launch` of `python -m module args` in `num_processes` ranks.

    `--multi_gpu` selects torch's elastic launcher, one process per rank, on GPUs and on
    the CPU alike; on the CPU (`cpu`) ACCELERATE_USE_CPU in the environment makes each
    rank take gloo (see `launch_env`). Every value is passed so that no `accelerate config`
    file of the user's changes what a job does.
    """
    threads = max(1, (os.cpu_count() or 1) // num_processes) if cpu else 1
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(port),
        "--mixed_precision",
        "no",  # the spec's mixed_precision is applied by the Trainer itself
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        os.environ.get("OMP_NUM_THREADS", str(threads)),
        "-m",
        module,
        *args,
    ]


def launch_env(*, cpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    env[JOB_PID_ENV] = str(os.getpid())  # the ranks watch us: we die, they do
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def check_devices(num_processes: int, device: str) -> bool:
    """Whether the ranks train on the CPU; a clear error when the GPUs cannot hold them.

    One GPU per rank: a GPU worker started with CUDA_VISIBLE_DEVICES=0,1 runs 2 ranks.
    Asks the driver how many GPUs it sees, which initialises no CUDA context.
    """
    if device == "cpu" or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        gpus = 0
    else:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0 and device == "cuda":
        raise ValueError("the spec asks for device 'cuda' but no GPU is visible here")
    if gpus == 0:
        return True
    if num_processes > gpus:
        raise ValueError(
            f"num_processes={num_processes} needs one GPU per process and this machine "
            f"sees {gpus} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            "lower num_processes or set device 'cpu'"
        )
    return False


def run_launcher(
    num_processes: int, module: str, args: list[str], *, cpu: bool, cwd: Path | None = None
) -> int:
    """Run the ranks to their end in the foreground; return the launcher's exit code."""
    port = free_port()
    cmd = launch_command(num_processes, port, module, args, cpu=cpu)
    log.info(
        "accelerate launch: %d processes on %s, rendezvous port %d",
        num_processes,
        "the CPU (gloo)" if cpu else "GPUs",
        port,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Same process group as ours: a signal to the job's group reaches the launcher.
    proc = subprocess.Popen(cmd, env=launch_env(cpu=cpu), cwd=cwd, stdin=subprocess.DEVNULL)
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise


def write_launch_file(output_dir: Path, content: dict[str, Any]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / f".{LAUNCH_FILE}.tmp"
    tmp.write_text(json.dumps(content))
    tmp.replace(output_dir / LAUNCH_FILE)


def read_launch_file(output_dir: Path) -> dict[str, Any]:
    return json.loads((output_dir / LAUNCH_FILE).read_text())


def rank_error_file(output_dir: Path, rank: int) -> Path:
    """Where rank `rank` leaves the traceback that ended it."""
    return output_dir / f"rank-{rank}.error"


def rank_errors(output_dir: Path) -> str:
    """The tracebacks the ranks left, rank by rank ('' if none)."""
    files = sorted(output_dir.glob("rank-*.error"))
    return "\n".join(f"{f.stem}:\n{f.read_text()}" for f in files)


def clear_rank_errors(output_dir: Path) -> None:
    for f in output_dir.glob("rank-*.error"):
        f.unlink()
