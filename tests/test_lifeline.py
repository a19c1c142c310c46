"""`worker.lifeline`: a process told to watch its supervisor shuts down once the supervisor
is gone: warm first (SIGTERM to itself), and cold (SIGKILL) if the warm one does not end it
within the grace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.jobs.helpers import REPO
from tests.processes import stop_tree
from worker.lifeline import SUPERVISOR_PID_ENV, supervisor_pid

CHILD = """
import signal, sys, time
from worker import lifeline
if sys.argv[1] == "ignore-sigterm":  # a warm shutdown that never ends
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
lifeline.start(lifeline.supervisor_pid(), exit_grace=1.0)
print("watching", flush=True)
time.sleep(60)
"""


def _supervised(mode: str) -> tuple[subprocess.Popen, subprocess.Popen]:
    """(a stand-in supervisor, a process watching it), neither its child: as when a
    shell sits between `up` and the worker."""
    supervisor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watcher = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        cwd=REPO,
        env={**os.environ, SUPERVISOR_PID_ENV: str(supervisor.pid)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert watcher.stdout.readline().strip() == "watching"
    return supervisor, watcher


@pytest.mark.parametrize(
    ("mode", "ended_by"), [("default", -signal.SIGTERM), ("ignore-sigterm", -signal.SIGKILL)]
)
def test_a_watcher_shuts_down_when_its_supervisor_dies(mode, ended_by):
    supervisor, watcher = _supervised(mode)
    try:
        assert watcher.poll() is None
        supervisor.kill()
        supervisor.wait()
        # warm at once; cold after the 1 s grace when SIGTERM changes nothing
        assert watcher.wait(timeout=10) == ended_by
    finally:
        stop_tree(watcher, None)
        stop_tree(supervisor, None)


def test_the_supervisor_pid_must_be_a_pid():
    assert supervisor_pid({}) is None
    assert supervisor_pid({SUPERVISOR_PID_ENV: "1234"}) == 1234
    for bad in ("x", "1", "-5"):
        with pytest.raises(ValueError, match=SUPERVISOR_PID_ENV):
            supervisor_pid({SUPERVISOR_PID_ENV: bad})
