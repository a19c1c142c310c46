"""The command line over the job system, in embedded mode (`up` is in test_up.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.jobs.helpers import REPO
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

    generate = ["submit", "generate", "--checkpoint", "1", "--length", "4", "--judge", "none"]
    assert main([*generate, "--wait"]) == 0  # judging: test_judged_generation.py
    assert main(["jobs", "cancel", "2"]) == 0  # already finished: says so, changes nothing
    assert "succeeded" in capsys.readouterr().out


@embedded
def test_jobs_show_tells_where_a_training_job_resumed(job_env, capsys):
    from shared import jobs, submit
    from tests.jobs.helpers import tiny_train_spec
    from worker import results

    job = submit.submit_train(tiny_train_spec(job_env))
    assert main(["jobs", "show", str(job.id)]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_from_step"] is None  # not started
    claim = jobs.claim(job.id, "w2@test")  # as attempt 2 records it
    results.merge_run_summary(claim, job.run_id, {"resumed_from_step": 40})
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


@embedded
def test_an_error_is_as_fast_as_an_answer(job_env):
    """A command that fails on bad input, or a command line that does not parse, prints its
    error without importing torch (the error handler used to import the ML core to know its
    exception types)."""
    code = (
        "import sys; from text_diffusion.cli import main; "
        "code = main(['frontier', 'show', 'nope']); assert code == 2, code\n"
        "try: main(['submit', 'generate', '--checkpoint', '1', '--strategies', 'nonesuch'])\n"
        "except SystemExit as exc: assert exc.code == 2, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "error: no frontier named 'nope'" in proc.stderr
    assert "invalid choice 'nonesuch'" in proc.stderr  # a parse error, as fast
