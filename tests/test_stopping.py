"""`watch_parent`: a process ends its group when the process that started it, or a second
process it was told to watch, is gone (how ranks and job processes never outlive theirs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.jobs.helpers import REPO

CHILD = """
import sys, time
from worker.stopping import watch_parent
also = int(sys.argv[1]) if len(sys.argv) > 1 else None
import os
watch_parent(os.getppid(), also=also)
print("watching", flush=True)
time.sleep(60)
"""


def start_watcher(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: the SIGKILL it sends hits only itself
    )
    assert proc.stdout.readline().strip() == "watching"
    return proc


def test_ends_when_the_watched_process_ends():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watcher = start_watcher(str(other.pid))
    time.sleep(1.0)
    assert watcher.poll() is None  # both alive: keeps running
    other.kill()
    other.wait()
    assert watcher.wait(timeout=5) == -9


PARENT = """
import subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True,
    start_new_session=True,
)
assert child.stdout.readline().strip() == "watching"
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie, or no such process, is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def test_keeps_running_while_its_parent_lives_and_ends_with_it():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    watcher = int(parent.stdout.readline())
    try:
        time.sleep(1.2)
        assert _alive(watcher)  # its parent lives: it keeps running
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(watcher) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(watcher), "the watcher outlived its parent"
    finally:
        if _alive(watcher):
            os.kill(watcher, signal.SIGKILL)
