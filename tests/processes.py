"""Processes the tests start: stopped with everything they started, whatever happened, and
none left behind when the session ends.

`stop_tree(proc)` is the teardown of every test or fixture that starts `up` or a worker: a
polite signal first, then SIGKILL to the process group of the process and of each of its
descendants (a worker runs in a session of its own, and so do its warm process and its
jobs: one group is not enough).

The session marks itself (`mark_session`: an environment variable every child inherits);
`leftovers` finds the processes that carry the mark once the tests are done, which
tests/conftest.py reports as a failure and kills.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

MARK_ENV = "TEXT_DIFFUSION_TEST_SESSION"
PROC = Path("/proc")


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after `comm` (state, ppid, pgrp, ...); None if gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return raw.rsplit(b")", 1)[1].split()


def alive(pid: int) -> bool:
    """Running: a zombie (ended, not yet reaped) counts as gone."""
    fields = _stat(pid)
    return fields is not None and fields[0] != b"Z"


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def descendants(pid: int) -> list[int]:
    """`pid`'s children, their children, ... as /proc shows them now."""
    children: dict[int, list[int]] = {}
    for p in _pids():
        fields = _stat(p)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(p)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_groups(pids: list[int]) -> None:
    """SIGKILL the process group of each of `pids` still running (never our own group)."""
    own = os.getpgrp()
    for pid in pids:
        fields = _stat(pid)
        if fields is None or fields[0] == b"Z":
            continue
        group = int(fields[2])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group != own:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


def stop_tree(
    proc: subprocess.Popen, sig: signal.Signals | None = signal.SIGTERM, timeout: float = 60.0
) -> int | None:
    """Stop `proc` and everything it started; return its exit status (None if it had to
    be killed after `sig`, or if `sig` is None).

    Sends `sig` and waits up to `timeout` s for `proc` to exit; then SIGKILLs the group of
    `proc` and of every descendant seen before the signal or after it (its processes may
    have been re-parented by then), and waits for `proc`.
    """
    tree = [proc.pid, *descendants(proc.pid)]
    code = None
    if sig is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = proc.wait(timeout)
    elif proc.poll() is not None:
        code = proc.returncode
    _kill_groups(list(dict.fromkeys([*tree, *descendants(proc.pid)])))
    proc.wait(10)
    return code


def mark_session() -> str:
    """Mark this process, and so every process it starts, as this test session's (a new
    mark, even inside another session: each checks only what it started)."""
    mark = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.environ[MARK_ENV] = mark
    return mark


def _marked(pid: int, mark: str) -> bool:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or someone else's
        return False
    return f"{MARK_ENV}={mark}".encode() in environ.split(b"\0")


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def leftovers(mark: str, wait_s: float = 0.0) -> dict[int, str]:
    """Processes other than this one (and its ancestors) that carry session mark `mark`
    and still run `wait_s` seconds from now (they may be on their way out); pid -> command."""
    exempt = {os.getpid()}
    ancestor = os.getpid()
    while ancestor > 1 and (fields := _stat(ancestor)) is not None:
        ancestor = int(fields[1])
        exempt.add(ancestor)
    deadline = time.monotonic() + wait_s
    while True:
        found = {
            pid: _cmdline(pid)
            for pid in _pids()
            if pid not in exempt and alive(pid) and _marked(pid, mark)
        }
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
