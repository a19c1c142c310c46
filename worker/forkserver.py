"""The warm fork server: a process that has imported torch and the job modules once, and
forks a job process per request, so that a job starts in milliseconds rather than the
seconds those imports take. Both halves of its protocol live here.

Server: `python -m worker.forkserver` (`serve`). It imports `PRELOAD`, then reads
requests on stdin and answers on stdout, one JSON object a line:

    request  {"token", "argv": [JOB, ATTEMPT, WORKER], "log": path, "env": {...}}
    replies  {"ready": true}                 once preloaded
             {"token", "pid"}                a job was forked (or {"token", "error"})
             {"pid", "returncode"}           it ended (negative: killed by that signal,
                                             as `subprocess` reports it)

It never touches the database or `torch.cuda`: a fork must inherit neither a connection
nor a CUDA context (CUDA cannot be used in a child forked after the parent initialised
it). Each child starts as a fresh `python -m worker.execute ...` would: its own session,
stdout and stderr on the job's log, the worker's environment as of the request,
settings and engines built anew; then it runs `worker.execute.main`. The server exits
when its stdin closes (the worker is gone); its jobs then see their parent change and
kill themselves.

Client: `WarmProcess`, one per worker process (`warm_process()`), shared by its runner
threads; a thread reads the replies and hands each to the runner waiting for it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import traceback
import uuid
from pathlib import Path
from typing import Any

from shared import db, jobs
from shared.settings import get_settings
from worker.bodies import body_modules

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# How long a worker's first job waits for the warm process to import torch and the rest:
# generous, because a loaded machine takes 20 s; past it, jobs start cold.
WARM_READY_TIMEOUT_S = 300.0
# How long a job waits for the (ready) warm process to fork it: a fork takes milliseconds.
WARM_FORK_TIMEOUT_S = 30.0

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
    "worker.execute",
    *body_modules(),
)


# ----------------------------------------------------------------------------- client


class WarmProcessGone(RuntimeError):
    """The warm process exited, or did not answer in time: start the job cold."""


class ForkedJob:
    """A job process the warm process forked: `pid` and `wait`, as on `subprocess.Popen`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"job process {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def ended(self, returncode: int) -> None:
        self.returncode = returncode
        self._ended.set()


class WarmProcess:
    """`python -m worker.forkserver` and the jobs it forked for this worker."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # signals meant for the worker's group are not for it
            cwd=ROOT,
        )
        self._lock = threading.Lock()  # `_waiting`, `_jobs` and `gone`
        self._write_lock = threading.Lock()  # one request at a time down the pipe
        self._waiting: dict[str, queue.SimpleQueue[ForkedJob | str]] = {}
        self._jobs: dict[int, ForkedJob] = {}
        self._ready = threading.Event()
        self._settled = threading.Event()  # ready, or gone before it was
        self.gone = False
        threading.Thread(target=self._read, name="warm-replies", daemon=True).start()

    def wait_ready(self, timeout: float) -> bool:
        """True once it has imported everything; False if it died or took too long."""
        self._settled.wait(timeout)
        return self._ready.is_set() and not self.gone

    def start(self, c: jobs.Claim, log_file: Path) -> ForkedJob:
        """Fork the job process of claim `c`, writing to `log_file`."""
        token = uuid.uuid4().hex
        request = {
            "token": token,
            "argv": [str(c.job_id), str(c.attempt), c.worker],
            "log": str(log_file),
            "env": dict(os.environ),  # what a fresh process would inherit now
        }
        answer: queue.SimpleQueue[ForkedJob | str] = queue.SimpleQueue()
        with self._lock:
            if self.gone:
                raise WarmProcessGone("the warm process has exited")
            self._waiting[token] = answer
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: closed meanwhile
            with self._lock:
                self._waiting.pop(token, None)
            raise WarmProcessGone(f"the warm process is not listening: {exc}") from exc
        try:
            reply = answer.get(timeout=WARM_FORK_TIMEOUT_S)
        except queue.Empty:
            # Hung: end it (a job it forks later dies with it) and start this one cold.
            self.close(kill=True)
            raise WarmProcessGone("the warm process did not answer") from None
        if isinstance(reply, str):
            raise WarmProcessGone(reply)
        return reply

    def _read(self) -> None:
        try:
            self._dispatch()
        finally:
            self._gone()

    def _dispatch(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                reply = None
            if not isinstance(reply, dict):  # a stray print before it moved stdout aside
                log.info("warm process: %s", line.decode(errors="replace").rstrip())
                continue
            if "ready" in reply:
                self._ready.set()
                self._settled.set()
            elif "returncode" in reply:
                with self._lock:
                    job = self._jobs.pop(reply["pid"], None)
                if job is not None:
                    job.ended(reply["returncode"])
            else:
                error = reply.get("error")
                forked = None if error else ForkedJob(reply["pid"])
                with self._lock:
                    if forked is not None:
                        self._jobs[forked.pid] = forked
                    answer = self._waiting.pop(reply["token"], None)
                if answer is not None:
                    answer.put(forked or f"the warm process could not fork: {error}")

    def _gone(self) -> None:
        """The warm process exited: its jobs kill themselves; make sure, and say so."""
        self.proc.wait()
        with self._lock:
            self.gone = True
            orphans, self._jobs = list(self._jobs.values()), {}
            waiting, self._waiting = list(self._waiting.values()), {}
        self._settled.set()
        for answer in waiting:
            answer.put("the warm process exited")
        for job in orphans:
            log.warning("warm process exited under job process %s; killing it", job.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)
            job.ended(-signal.SIGKILL)

    def close(self, *, kill: bool = False) -> None:
        """Let it exit (closing its stdin) or kill it; its jobs die with it either way."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(OSError), self._write_lock:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)


_warm: WarmProcess | None = None
_warm_broken = False  # it once failed to start: start jobs cold from then on
_warm_lock = threading.Lock()


def warm_process() -> WarmProcess | None:
    """This worker's warm process, started and waited for on first use (a worker's first
    job waits for the imports, as a cold job would); None if it cannot start."""
    global _warm, _warm_broken
    with _warm_lock:
        if _warm_broken:
            return None
        if _warm is None or _warm.gone:  # first use, or it died since (it starts again)
            _warm = WarmProcess()
        warm = _warm
    if warm.wait_ready(WARM_READY_TIMEOUT_S):
        return warm
    log.warning("the warm process did not start; jobs start cold (a fresh Python each)")
    warm.close(kill=True)
    with _warm_lock:
        _warm_broken = True
    return None


def stop_warm_process() -> None:
    """End this process's warm process, if any (tests; it also ends when we exit)."""
    global _warm, _warm_broken
    with _warm_lock:
        warm, _warm, _warm_broken = _warm, None, False
    if warm is not None:
        warm.close()


# ----------------------------------------------------------------------------- server


def preload() -> None:
    """Import `PRELOAD`. Touches neither the database nor CUDA."""
    for name in PRELOAD:
        importlib.import_module(name)


def preload_judge(again: bool = False) -> bool:
    """Load the worker's WORKER_PRELOAD_JUDGE on the CPU (`bodies.quality.preload_judge`),
    so the jobs forked after share it. Touches neither the database nor CUDA. A judge that
    fails to load is reported and left to the jobs: it must not keep jobs from starting
    warm. It loads on one thread: a fork after OpenMP has started its threads can leave the
    child's OpenMP hung, so the warm process never starts them.

    Returns True while a later call may preload it: a packaged judge not converted yet
    (the first generation job converts it). `serve` calls again (`again`: quietly, unless
    it is converted by now) each time a job ends, so the next jobs start with it."""
    import torch

    from worker.bodies import quality
    from worker.diffusion.packaged_judge import PACKAGED_JUDGES, is_converted

    settings = get_settings()
    source = settings.preload_judge
    if source is None or source in quality._LOADED:
        return False
    pending = source in PACKAGED_JUDGES
    if again and pending and not is_converted(source, settings.judge_cache_dir):
        return True
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        message = quality.preload_judge(source)
    except Exception as exc:
        message = f"judge {source} not preloaded: {exc}"
        pending = False  # it failed to load: the jobs load it (and say why)
    finally:
        torch.set_num_threads(threads)
    print(f"warm process: {message}", file=sys.stderr, flush=True)
    return pending and source not in quality._LOADED


def serve() -> None:
    """`python -m worker.forkserver`: preload, then fork a job per request (the protocol
    is in the module docstring). Returns when stdin closes."""
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
    judge_pending = preload_judge()
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
                ended = _reap()
                for pid, code in ended:
                    reply({"pid": pid, "returncode": code})
                if ended and judge_pending:  # that job may have converted it
                    judge_pending = preload_judge(again=True)
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
        from worker.execute import main

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
    serve()
