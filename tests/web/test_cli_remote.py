"""The CLI with `--url`: submit and manage jobs through a real server's HTTP API.

The app runs under werkzeug's server on a free port in a thread; the CLI talks to it
over TCP with the token from TD_API_TOKEN. Progress for `--wait` comes from a thread that
claims the job and moves it through `shared.jobs`, as a worker does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flask import request
from sqlalchemy import select, update
from werkzeug.serving import make_server

from shared import job_reads, jobs
from shared.db import session_scope
from shared.models import Checkpoint, Job, JobStatus, Run
from tests.web.conftest import TOKEN
from tests.web.seed import add_run
from text_diffusion.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(app):
    """(base URL, list of "METHOD /path" the server answered)."""
    seen: list[str] = []

    @app.after_request
    def _log(response):
        seen.append(f"{request.method} {request.path}")
        return response

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.port}", seen
    srv.shutdown()
    thread.join(10)


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("TD_API_TOKEN", TOKEN)
    monkeypatch.delenv("TD_URL", raising=False)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_and_manage_jobs_through_the_api(server, token, capsys):
    url, seen = server
    code, out, _ = cli(
        capsys, "submit", "train", "--preset", "tiny", "--max-steps", "5", "--lr", "0.002",
        "--name", "remote run", "--priority", "4", "--url", url,
    )  # fmt: skip
    assert code == 0, out
    job_id = int(out.split()[1])
    assert out.strip() == f"job {job_id} queued (train on cpu)"
    assert "POST /api/runs" in seen
    with session_scope() as s:
        job = s.get(Job, job_id)
        run = s.get(Run, job.run_id)
        assert (run.name, run.max_steps, run.spec["lr"]) == ("remote run", 5, 0.002)
        assert job.priority == 4

    code, out, _ = cli(capsys, "jobs", "list", "--url", url)
    assert code == 0 and "GET /api/jobs" in seen
    header, row = out.splitlines()[:2]
    assert header.split() == ["id", "kind", "status", "progress", "tries", "worker"]
    assert row.split() == [str(job_id), "train", "queued", "0%", "0/3"]

    code, out, _ = cli(capsys, "jobs", "show", str(job_id), "--url", url)
    shown = json.loads(out)
    assert (shown["id"], shown["status"], shown["spec"]["max_steps"]) == (job_id, "queued", 5)

    assert cli(capsys, "jobs", "cancel", str(job_id), "--url", url)[1] == (
        f"job {job_id}: cancelled\n"
    )
    assert job_reads.get_job(job_id).status == JobStatus.CANCELLED
    assert cli(capsys, "jobs", "retry", str(job_id), "--url", url)[1] == (
        f"job {job_id} queued again\n"
    )
    assert job_reads.get_job(job_id).status == JobStatus.QUEUED

    code, _, err = cli(capsys, "jobs", "retry", str(job_id), "--url", url)
    assert code == 2 and "only failed or cancelled jobs retry (HTTP 409)" in err
    code, _, err = cli(capsys, "jobs", "cancel", "999", "--url", url)
    assert code == 2 and "no job with id 999 (HTTP 404)" in err


def test_td_url_from_the_environment(server, token, monkeypatch, capsys):
    url, seen = server
    monkeypatch.setenv("TD_URL", url)
    code, _, _ = cli(capsys, "submit", "train", "--preset", "tiny", "--max-steps", "3")
    assert code == 0 and "POST /api/runs" in seen
    assert cli(capsys, "jobs", "list")[1].count("train") == 1


def test_generate_and_evaluate_through_the_api(server, token, tmp_path, capsys):
    url, seen = server
    run_id = add_run("trained")
    folder = tmp_path / "weights"
    folder.mkdir()
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()[-1]
        s.execute(update(Checkpoint).where(Checkpoint.id == ckpt.id).values(url=folder.as_uri()))
        ckpt_id = ckpt.id
    code, out, _ = cli(
        capsys, "submit", "generate", "--checkpoint", str(ckpt_id), "--prompt", "In the",
        "--temperatures", "0.5,0.9", "--steps", "4", "--url", url,
    )  # fmt: skip
    assert code == 0 and out.endswith("(generate on cpu)\n")
    job = job_reads.get_job(int(out.split()[1]))
    assert job.spec["grid"]["temperatures"] == [0.5, 0.9] and job.spec["checkpoint"] == ckpt_id
    code, out, _ = cli(
        capsys, "submit", "evaluate", "--checkpoint", str(ckpt_id), "--batches", "2", "--url", url
    )
    assert code == 0 and out.endswith("(evaluate on cpu)\n")
    assert [x for x in seen if "POST" in x] == ["POST /api/generate", "POST /api/evaluate"]


def test_clear_errors(server, token, monkeypatch, capsys):
    url, _ = server
    # 422: the server's own checks, named by field.
    code, _, err = cli(
        capsys, "submit", "train", "--preset", "tiny", "--dataset", "/etc/passwd", "--url", url
    )
    assert code == 2
    assert err.startswith("error: invalid request: spec.dataset: '/etc/passwd' is outside")
    code, _, err = cli(capsys, "submit", "generate", "--checkpoint", "4242", "--url", url)
    assert code == 2 and "spec.checkpoint: no checkpoint with id 4242" in err

    # 401: no token, or a wrong one.
    monkeypatch.delenv("TD_API_TOKEN")
    code, _, err = cli(capsys, "jobs", "list", "--url", url)
    assert code == 2 and "set TD_API_TOKEN" in err
    monkeypatch.setenv("TD_API_TOKEN", "not-a-token")
    code, _, err = cli(capsys, "jobs", "list", "--url", url)
    assert code == 2 and "refused the token in TD_API_TOKEN" in err

    # Nobody listening.
    closed = make_server("127.0.0.1", 0, lambda *a: None)
    port = closed.port
    closed.server_close()
    code, _, err = cli(capsys, "jobs", "list", "--url", f"http://127.0.0.1:{port}")
    assert code == 2 and f"cannot reach http://127.0.0.1:{port}" in err
    assert "Connection refused" in err
    code, _, err = cli(capsys, "jobs", "list", "--url", "localhost:8000")
    assert code == 2 and "--url must look like http://HOST:PORT" in err
    with session_scope() as s:
        assert s.scalars(select(Run)).all() == []


def _work(job_id: int, outcome: str) -> None:
    """What a worker does to a job's row: claim it, report progress, finish it."""
    claim = None
    while claim is None:
        claim = jobs.claim(job_id, "test-worker")
        time.sleep(0.05)
    for progress in (0.25, 0.5, 0.75):
        jobs.heartbeat(claim, progress)
        time.sleep(0.3)
    if outcome == "succeeded":
        jobs.succeed(claim)
    else:
        jobs.fail(claim, "boom: out of patience")


@pytest.mark.parametrize("outcome, code", [("succeeded", 0), ("failed", 1)])
def test_wait_follows_the_job_through_the_api(server, token, capsys, outcome, code):
    url, seen = server
    with session_scope() as s:
        next_id = (s.scalar(select(Job.id).order_by(Job.id.desc()).limit(1)) or 0) + 1
    worker = threading.Thread(target=_work, args=(next_id, outcome))
    worker.start()
    got, out, err = cli(
        capsys, "submit", "train", "--preset", "tiny", "--max-steps", "3", "--wait", "--url", url
    )
    worker.join(30)
    assert got == code
    assert out.splitlines()[0] == f"job {next_id} queued (train on cpu)"
    assert out.splitlines()[-1].startswith(f"job {next_id} {outcome}")
    assert f"job {next_id}" in err  # the bar
    if outcome == "succeeded":
        assert "100/100" in err
    else:
        assert "boom: out of patience" in out
    polls = [x for x in seen if x == f"GET /api/jobs/{next_id}"]
    assert len(polls) >= 2


def test_a_separate_process_needs_no_database(server, tmp_path):
    """The real command line, with a database URL that cannot work: only HTTP is used."""
    url, seen = server
    env = {
        **os.environ,
        "TD_API_TOKEN": TOKEN,
        "TD_URL": url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/missing-dir/none.db",
        "DATA_DIR": str(tmp_path / "elsewhere"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "text_diffusion.cli", "submit", "train", "--preset", "tiny"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("job ") and "POST /api/runs" in seen


def test_a_sweep_based_on_a_run_through_the_api(server, token, tmp_path, capsys):
    from shared.contracts.sweep import SweepSpec
    from shared.models import Sweep

    url, seen = server
    run_id = add_run("base", steps=20, eval_every=10, spec_overrides={"lr": 0.004})
    path = tmp_path / "around.yaml"
    path.write_text("name: around\nparameters: {lr: {values: [1.0e-3, 2.0e-3]}}\n")
    code, _, err = cli(
        capsys, "sweep", "submit", str(path), "--base-run", str(run_id), "--url", url
    )
    assert code == 0, err
    assert f"GET /api/runs/{run_id}" in seen and "POST /api/sweeps" in seen
    with session_scope() as s:
        spec = SweepSpec.model_validate(s.query(Sweep).one().spec)
    assert spec.base_spec().lr == 0.004 and spec.base_spec().max_steps == 20
    code, _, err = cli(capsys, "sweep", "submit", str(path), "--base-run", "999", "--url", url)
    assert code == 2 and "no run with id 999 (HTTP 404)" in err
