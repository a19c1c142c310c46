"""`watch_parent`: a process ends its group when the process that started it, or a second
process it was told to watch, is gone (how ranks and job processes never outlive theirs)."""

from __future__ import annotations

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


def test_keeps_running_while_its_parent_lives():
    watcher = start_watcher()
    try:
        time.sleep(1.2)
        assert watcher.poll() is None
    finally:
        watcher.kill()
        watcher.wait()
