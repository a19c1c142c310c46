"""The job body's process: `python -m worker.execute JOB_ID ATTEMPT WORKER`, or a fork of
the warm process `python -m worker.execute --warm`.

Started by `worker.runner` in its own session. Loads the job, runs the body for its kind,
and exits with 0 (done), 1 (an exception; the traceback goes to the log's `.error` file),
or `EXIT_STOPPED` (stopped on request, state saved).

Two guards make it safe to leave running: SIGTERM asks it to stop at the next step (as a
cancel does), and if its parent (the worker's runner, or the warm process, which exits
with the worker) dies it kills its own process group, so a SIGKILLed worker never leaves
a job running that the reconciler will start again.

The warm process (`serve_warm`) imports what job bodies import (torch, transformers,
accelerate, datasets, the job modules: most of a small job's time) once, then forks one
child per request from the runner. It never touches the database or `torch.cuda`: a fork
must inherit neither a connection nor a CUDA context (CUDA cannot be used in a child
forked after the parent initialised it). Each child starts as a fresh process would: its
own session, stdout and stderr on the job's log, the worker's environment as of the
request, settings and engines built anew.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import selectors
import signal
import sys
import traceback
from typing import Any

from shared import db, jobs
from shared.db import retry_on_disconnect, session_scope
from shared.models import Job, JobKind
from shared.settings import get_settings
from worker.runner import EXIT_STOPPED, log_path
from worker.stopping import StopControl, Stopped, watch_parent

log = logging.getLogger("worker.execute")

# What the warm process imports before it forks jobs: everything a job body imports at
# its start, so that a job begins with it loaded. Nothing here may touch CUDA or the
# database at import time (tests/jobs/test_warm_start.py checks).
PRELOAD = (
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "tokenizers",
    "worker.diffusion.modeling",
    "worker.diffusion.training",
    "worker.diffusion.generate",
    "worker.diffusion.evaluation",
    "worker.diffusion.data",
    "worker.train_job",
    "worker.generate_job",
    "worker.evaluate_job",
)


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


def main(argv: list[str], *, parent: int | None = None) -> int:
    """Run attempt ATTEMPT of job JOB_ID for WORKER (`argv`); return the exit code.

    `parent`: the process whose death must kill this job (default: our parent now).
    """
    job_id, attempt, worker = int(argv[0]), int(argv[1]), argv[2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    watch_parent(os.getppid() if parent is None else parent)
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


# ----------------------------------------------------------------------------- warm process


def preload() -> None:
    """Import `PRELOAD`. Touches neither the database nor CUDA."""
    for name in PRELOAD:
        importlib.import_module(name)


def serve_warm() -> None:
    """`python -m worker.execute --warm`: preload, then fork a job per request.

    Talks to its runner over stdin (requests) and stdout (replies), one JSON object a
    line. Request: {"token", "argv": [JOB, ATTEMPT, WORKER], "log": path, "env": {...}}.
    Replies: {"ready": true} once preloaded; {"token", "pid"} when a job is forked (or
    {"token", "error"}); {"pid", "returncode"} when it ends (negative: killed by that
    signal, as `subprocess` reports it). Exits when stdin closes: the worker is gone, and
    the jobs then see their parent change and kill themselves.
    """
    # Stray prints (warnings of the imports) must not garble the replies: keep the pipes
    # on fds of their own and point stdin at /dev/null, stdout at stderr (the worker's log).
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    # The worker ends us by closing the pipe; a signal to all of its processes (systemd's
    # stop) must not kill us first, or our jobs would kill themselves instead of saving.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload()
    if sys.modules["torch"].cuda.is_initialized():  # asks; initialises nothing
        raise RuntimeError("importing the job modules initialised CUDA; jobs cannot fork from here")

    def reply(message: dict[str, Any]) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    # SIGCHLD wakes the selector, so an exit is reported at once rather than on a poll.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    private = (requests, replies, wake_r, wake_w, selector.fileno())  # not the jobs'
    reply({"ready": True})
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                os.read(wake_r, 4096)
                for pid, code in _reap():
                    reply({"pid": pid, "returncode": code})
                continue
            chunk = os.read(requests, 1 << 16)
            if not chunk:
                return  # the worker closed the pipe: it is gone
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                try:
                    pid = _fork_job(request, private)
                except OSError as exc:
                    reply({"token": request["token"], "error": str(exc)})
                else:
                    reply({"token": request["token"], "pid": pid})


def _reap() -> list[tuple[int, int]]:
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, os.waitstatus_to_exitcode(status)))


def _fork_job(request: dict[str, Any], private: tuple[int, ...]) -> int:
    """Fork the job of `request`; return its pid (in the warm process only)."""
    parent = os.getpid()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write our buffered output again
    # The pid goes to the runner once the child is in its own session, so that the runner's
    # first signal to the job's process group cannot come before the group exists.
    in_session_r, in_session_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(in_session_r)
        os.close(in_session_w)
        raise
    if pid:
        os.close(in_session_w)
        os.read(in_session_r, 1)  # b"" if it died first: fine, its end is reported anyway
        os.close(in_session_r)
        return pid
    code = 1
    try:
        os.close(in_session_r)
        os.setsid()  # its own process group: the runner's signals reach its children too
        os.close(in_session_w)
        _become_job(request, private)
        code = main(request["argv"], parent=parent)
    except SystemExit as exc:  # as the interpreter would turn it into a status
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        # The exit a fresh process would make (exit handlers: the ones its imports registered
        # and its own; flushed streams), but by os._exit: unwinding would return into the
        # warm process's loop.
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _become_job(request: dict[str, Any], private: tuple[int, ...]) -> None:
    """In the forked child: become what `python -m worker.execute ...` would have been."""
    signal.set_wakeup_fd(-1)
    for sig, handler in (
        (signal.SIGCHLD, signal.SIG_DFL),
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGINT, signal.default_int_handler),
    ):
        signal.signal(sig, handler)
    for fd in private:
        os.close(fd)
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.argv = [sys.argv[0], *request["argv"]]
    # The worker's environment now, and settings and engines built from it, not ours.
    os.environ.clear()
    os.environ.update(request["env"])
    get_settings.cache_clear()
    db.dispose_engines()
    if "numpy" in sys.modules:  # a fresh process seeds numpy's global RNG afresh; so do we
        sys.modules["numpy"].random.seed()


if __name__ == "__main__":
    if sys.argv[1:] == ["--warm"]:
        serve_warm()
    else:
        sys.exit(main(sys.argv[1:]))
