"""`text-diffusion up`, as real processes in embedded mode: a quiet first screen, a stop on
SIGINT however it was started, and a worker that never outlives it."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.security import check_password_hash

from shared import db, job_reads, submit
from shared.models import Checkpoint, JobStatus, Run, Worker, WorkerState
from shared.settings import get_settings
from tests.jobs.helpers import REPO, tiny_train_spec, wait_for
from tests.processes import alive, descendants, stop_tree
from text_diffusion.cli import main
from web.auth import ensure_password, password_file
from worker.lifeline import exit_grace_s

embedded = pytest.mark.parametrize("job_env", ["embedded"], indirect=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Up:
    """`text-diffusion up ARGS` on a free port; its terminal (stdout and stderr) in a file."""

    def __init__(self, tmp_path: Path, *args: str, ignore_sigint: bool = False) -> None:
        self.port = _free_port()
        self.terminal = tmp_path / f"terminal-{self.port}.txt"

        def background_shell() -> None:  # what `cmd &` in a script does to its child
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        with self.terminal.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "text_diffusion.cli", "up", "--port", str(self.port), *args],
                cwd=REPO,
                env=os.environ.copy(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=background_shell if ignore_sigint else None,
            )

    def text(self) -> str:
        return self.terminal.read_text()

    def first_screen(self, timeout: float = 60.0) -> list[str]:
        """The lines `up` printed from its address to its `logs:` line (with `--verbose`,
        log lines come before them)."""

        def printed() -> bool:
            assert self.proc.poll() is None, "up exited early:\n" + self.text()
            return "  logs:" in self.text()

        wait_for(printed, timeout, what="up's first screen")
        lines = self.text().splitlines()
        start = next(i for i, line in enumerate(lines) if " is up at " in line)
        return lines[start : next(i for i, line in enumerate(lines) if "  logs:" in line) + 1]

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 60.0) -> int | None:
        return stop_tree(self.proc, sig, timeout)


@pytest.fixture
def up(tmp_path):
    """A factory of `Up`s, each stopped with all it started at the end of the test."""
    started: list[Up] = []

    def start(*args: str, ignore_sigint: bool = False) -> Up:
        started.append(Up(tmp_path, *args, ignore_sigint=ignore_sigint))
        return started[-1]

    yield start
    for u in started:
        u.stop(signal.SIGKILL)


def _login(base: str, password: str) -> str:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    form = opener.open(f"{base}/", timeout=10).read().decode()  # redirected to /login
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode(
        {"username": "admin", "password": password, "csrf_token": token}
    ).encode()
    return opener.open(f"{base}/login", data, timeout=10).read().decode()


def _worker() -> Worker | None:
    with db.session_scope() as s:
        return s.scalars(select(Worker)).first()


@embedded
def test_up_started_with_sigint_ignored_is_quiet_and_stops_on_sigint(job_env, up, monkeypatch):
    """Started as a background shell starts it (SIGINT ignored), `up` still stops on SIGINT,
    server then worker. Its first screen is the address, a new password and where the logs
    are; Celery's banner and the request lines are in that file, not on the terminal."""
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    u = up(ignore_sigint=True)
    screen = u.first_screen()
    log_file = get_settings().data_dir / "up.log"
    assert len(screen) == 3, screen
    assert screen[0] == f"text-diffusion is up at http://127.0.0.1:{u.port}/  (Ctrl-C stops it)"
    login = re.fullmatch(r"  login:  admin / (\S+)   \(shown once; reset it with .*\)", screen[1])
    assert login, screen[1]
    assert screen[2] == f"  logs:   {log_file}"
    assert "<h1>Runs" in _login(f"http://127.0.0.1:{u.port}", login.group(1))

    wait_for(lambda: (w := _worker()) and w.state == WorkerState.ONLINE, 60, what="the worker")
    worker_pid = _worker().pid
    t0 = time.monotonic()
    assert u.stop(signal.SIGINT) == 0, u.text()
    assert time.monotonic() - t0 < 30
    assert _worker().state == WorkerState.OFFLINE
    assert not alive(worker_pid)
    assert u.text().splitlines()[3:] == ["stopping ...", "stopped"]
    logs = log_file.read_text()
    assert "celery@" in logs and "ready" in logs  # the worker's banner and start-up
    assert '"POST /login HTTP/1.1" 302' in logs  # the request lines, in plain text
    assert "\x1b[" not in logs + u.text()


@embedded
def test_up_says_a_password_is_set_new_password_replaces_it_and_verbose_logs_here(
    job_env, up, monkeypatch
):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    settings = get_settings()
    old = ensure_password(settings)  # as an earlier `up` in this data directory left it
    assert old is not None

    u = up("--no-worker", "--verbose")
    screen = u.first_screen()
    assert screen[1:] == [
        "  login:  admin; a password is already set; "
        "reset it with `text-diffusion up --new-password`",
        "  logs:   shown here (--verbose)",
    ]
    assert "INFO text_diffusion.up: database: sqlite:" in u.text()  # logged to the terminal
    assert u.stop(signal.SIGTERM) == 0, u.text()
    assert not (settings.data_dir / "up.log").exists()

    u = up("--no-worker", "--new-password")
    new = re.fullmatch(r"  login:  admin / (\S+)   .*", u.first_screen()[1]).group(1)
    assert u.stop(signal.SIGTERM) == 0, u.text()
    stored = password_file(settings).read_text().strip()
    assert check_password_hash(stored, new) and not check_password_hash(stored, old)


@embedded
def test_up_help_shows_the_real_defaults_and_new_password_refuses_admin_password(
    job_env, monkeypatch, capsys
):
    monkeypatch.setenv("WEB_PORT", "8123")
    get_settings.cache_clear()
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    out = capsys.readouterr().out
    assert "default 8123, from WEB_PORT" in out and "default 127.0.0.1, from WEB_HOST" in out
    assert "--new-password" in out and "--verbose" in out

    monkeypatch.setenv("ADMIN_PASSWORD", "chosen-by-the-operator")
    get_settings.cache_clear()
    assert main(["up", "--new-password"]) == 2
    assert "ADMIN_PASSWORD sets the password" in capsys.readouterr().err


def _checkpoint_steps(run_id: int) -> list[int]:
    with db.session_scope() as s:
        return list(s.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run_id)))


@embedded
def test_a_killed_up_leaves_no_worker_behind_and_its_job_resumes(job_env, up, workers):
    """SIGKILL to `up` (no chance to stop anything): its worker sees it gone, stops the job
    at its next step (queued again, its checkpoint kept) and exits with its warm process;
    another worker takes the job and resumes it."""
    u = up()
    u.first_screen()
    # Long enough that it cannot finish between its first checkpoint and the worker noticing
    # that `up` is gone (60 steps once did, on an idle machine).
    spec = tiny_train_spec(job_env, max_steps=400, save_every=10, eval_every=1000)
    job = submit.submit_train(spec)
    wait_for(lambda: _checkpoint_steps(job.run_id), 120, what="a first checkpoint")
    worker_pid = _worker().pid
    tree = descendants(worker_pid)  # its warm process and the job it forked
    warm = [p for p in tree if b"worker.forkserver" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert warm and len(tree) >= 2, tree

    u.proc.kill()
    u.proc.wait(10)
    everyone = [worker_pid, *tree]
    wait_for(
        lambda: not any(alive(p) for p in everyone),
        exit_grace_s(get_settings()) + 5,
        what="the worker, its warm process and the job to exit",
    )
    assert job_reads.get_job(job.id).status == JobStatus.QUEUED  # handed back, not left claimed
    assert _worker().state == WorkerState.OFFLINE

    workers("w2")
    wait_for(lambda: JobStatus(job_reads.get_job(job.id).status).finished, 120, what="the job")
    done = job_reads.get_job(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.worker == "w2@test", done.error
    with db.session_scope() as s:
        assert s.get(Run, job.run_id).summary["resumed_from_step"] >= 10
