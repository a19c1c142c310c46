"""A worker started by a supervisor (`text-diffusion up`) never outlives it.

The supervisor puts its pid in SUPERVISOR_PID_ENV of the worker it starts. The worker
(`start_from_env`, as it starts) watches that process the way a job process watches its
worker (`worker.stopping.watched_gone`). Once the supervisor is gone, by any means
(SIGKILL and the OOM killer included), the worker shuts down:

    warm  SIGTERM to itself: Celery's warm shutdown. A running job stops at its next step,
          saves, and goes back to the queue without using up an attempt; the worker exits,
          and its warm process (`worker.forkserver`) with it, as its stdin closes.
    cold  SIGKILL to itself, if it is still there `exit_grace_s` later. A job still
          running kills itself when its parent goes; its heartbeat goes stale and the
          reconciler queues it again, to resume from its last checkpoint.

Polling rather than the parent-death signal: it also works when something (a shell, `uv
run`) sits between the supervisor and the worker, and on macOS.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping

from shared.settings import Settings
from worker.stopping import WATCH_EVERY_S, process_gone, watched_gone

log = logging.getLogger(__name__)

SUPERVISOR_PID_ENV = "TEXT_DIFFUSION_SUPERVISOR_PID"
# Past the job's own grace (SIGTERM to SIGKILL), time for the worker to record the job and
# exit. Also how long `up` waits for its worker before it SIGKILLs it.
EXIT_MARGIN_S = 20.0


def exit_grace_s(settings: Settings) -> float:
    """How long a warm shutdown may take before the worker is killed."""
    return settings.cancel_grace_seconds + EXIT_MARGIN_S


def supervisor_pid(environ: Mapping[str, str] | None = None) -> int | None:
    """The supervisor's pid from SUPERVISOR_PID_ENV; None if unset. A bad value raises,
    naming the variable (a worker that cannot tell whom to watch must not start)."""
    raw = (os.environ if environ is None else environ).get(SUPERVISOR_PID_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 1:
        raise ValueError(f"{SUPERVISOR_PID_ENV}={raw!r} is not the pid of a process")
    return int(raw)


def _gone_check(pid: int) -> Callable[[], bool]:
    if os.getppid() == pid:  # our parent: re-parenting cannot be fooled by a reused pid
        return lambda: watched_gone(pid)
    return lambda: process_gone(pid)


def _kill_self(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)


def start(
    pid: int,
    exit_grace: float,
    *,
    warm: Callable[[], None] = lambda: _kill_self(signal.SIGTERM),
    cold: Callable[[], None] = lambda: _kill_self(signal.SIGKILL),
) -> threading.Thread:
    """Watch process `pid`; once it is gone call `warm`, and `cold` `exit_grace` seconds
    later (unless this process has exited by then)."""
    gone = _gone_check(pid)

    def loop() -> None:
        while not gone():
            time.sleep(WATCH_EVERY_S)
        log.warning("supervisor %s is gone: shutting down (killed in %.0f s)", pid, exit_grace)
        warm()
        time.sleep(exit_grace)
        log.warning("still running %.0f s after the supervisor died: killing myself", exit_grace)
        cold()

    thread = threading.Thread(target=loop, name="lifeline", daemon=True)
    thread.start()
    return thread


def start_from_env(settings: Settings) -> threading.Thread | None:
    """`start` on the supervisor named in the environment, if any."""
    pid = supervisor_pid()
    if pid is None:
        return None
    return start(pid, exit_grace_s(settings))
