"""The command line over the job system, and `text-diffusion up`, in embedded mode."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import select

from shared import db
from shared.models import Worker, WorkerState
from tests.jobs.helpers import REPO, wait_for
from text_diffusion.cli import main

embedded = pytest.mark.parametrize("job_env", ["embedded"], indirect=True)


@embedded
def test_submit_wait_and_manage_jobs(job_env, workers, tmp_path, capsys):
    assert main(["db", "upgrade"]) == 0
    workers("w1")
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"scratch": {"layers": 2, "hidden": 64, "heads": 2, "vocab_size": 400}})
    )
    flags = ["--preset", "tiny", "--spec", str(spec), "--dataset", str(job_env)]
    flags += ["--seq-len", "32", "--batch-size", "8", "--max-steps", "6", "--log-every", "2"]
    flags += ["--eval-every", "100", "--save-every", "100", "--mixed-precision", "no"]
    assert main(["submit", "train", *flags, "--name", "cli", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "job 1 queued" in out and "job 1 succeeded" in out

    assert main(["jobs", "list"]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["jobs", "show", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and shown["result"]["steps"] == 6
    assert shown["resumed_from_step"] == 0  # a first attempt starts from scratch

    assert main(["jobs", "retry", "1"]) == 2
    assert "only failed or cancelled" in capsys.readouterr().err
    assert main(["submit", "generate", "--checkpoint", "999"]) == 2
    assert "checkpoint: no checkpoint with id 999" in capsys.readouterr().err
    assert main(["submit", "train", "--preset", "tiny", "--dataset", "/etc/hostname"]) == 2
    assert "outside the data root" in capsys.readouterr().err
    assert main(["submit", "train", "--preset", "tiny", "--max-steps", "-1"]) == 2
    assert "max_steps" in capsys.readouterr().err

    assert main(["submit", "generate", "--checkpoint", "1", "--length", "4", "--wait"]) == 0
    assert main(["jobs", "cancel", "2"]) == 0  # already finished: says so, changes nothing
    assert "succeeded" in capsys.readouterr().out


@embedded
def test_jobs_show_tells_where_a_training_job_resumed(job_env, capsys):
    from shared import submit
    from tests.jobs.helpers import tiny_train_spec
    from worker import results

    job = submit.submit_train(tiny_train_spec(job_env))
    assert main(["jobs", "show", str(job.id)]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_from_step"] is None  # not started
    results.merge_run_summary(job.run_id, {"resumed_from_step": 40})  # as attempt 2 records it
    assert main(["jobs", "show", str(job.id)]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_from_step"] == 40


@embedded
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["jobs", "list"], 141),  # 128 + SIGPIPE, as a command killed by it
        (["jobs", "show", "1"], 141),
        (["workers", "list"], 141),
        (["submit", "train", "--help"], 0),  # argparse drops what it cannot write
    ],
)
def test_a_closed_pipe_ends_a_command_quietly(job_env, argv, code):
    """`text-diffusion jobs list | head -6`: the reader goes away before the command writes
    (here: the read end is closed at once), and the command exits without a traceback."""
    from shared import submit
    from tests.jobs.helpers import tiny_train_spec

    for _ in range(3):
        submit.submit_train(tiny_train_spec(job_env))
    proc = subprocess.Popen(
        [sys.executable, "-m", "text_diffusion.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before a byte is written
    err = proc.stderr.read().decode()
    assert proc.wait(60) == code, err
    assert err == ""


@embedded
def test_job_commands_do_not_import_torch(job_env):
    code = (
        "import sys; from text_diffusion.cli import main; "
        "main(['jobs', 'list']); main(['db', 'upgrade']); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@embedded
def test_up_serves_the_dashboard_and_stops_cleanly_on_ctrl_c(job_env, monkeypatch):
    """With no password configured, `up` prints a generated one once; it logs in."""
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "text_diffusion.cli", "up", "--port", str(port)],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not any("is up at" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "up exited early:\n" + "".join(lines)
            lines.append(line)
        login = next(line for line in lines if "Dashboard login: admin / " in line)
        password = login.split(" / ", 1)[1].strip()
        base = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        form = opener.open(f"{base}/", timeout=10).read().decode()  # redirected to /login
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode(
            {"username": "admin", "password": password, "csrf_token": token}
        ).encode()
        page = opener.open(f"{base}/login", data, timeout=10).read().decode()
        assert "<h1>Runs" in page

        def worker_state() -> WorkerState | None:
            with db.session_scope() as s:
                return s.scalars(select(Worker.state)).first()

        wait_for(lambda: worker_state() == WorkerState.ONLINE, 60, what="the worker")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert time.monotonic() - t0 < 30
        assert worker_state() == WorkerState.OFFLINE
    finally:
        if proc.poll() is None:
            proc.kill()
