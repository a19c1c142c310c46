"""`accelerate launch` as text-diffusion uses it: the command it builds, the devices it
accepts, and `text-diffusion train --num-processes 2` run for real on the CPU (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.jobs.helpers import REPO
from worker import launch


def test_the_command_names_every_setting_and_a_port_of_its_own():
    cmd = launch.launch_command(2, 41234, "worker.train_rank", ["/runs/run-7"], cpu=True)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cmd  # torch's launcher: one process per rank, CPU or GPU
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[cmd.index("--main_process_port") + 1] == "41234"
    assert cmd[cmd.index("--num_machines") + 1] == "1"
    # Every choice is on the command line: no `accelerate config` file fills a gap.
    for flag in ("--mixed_precision", "--dynamo_backend", "--num_cpu_threads_per_process"):
        assert cmd[cmd.index(flag) + 1]
    assert cmd[-3:] == ["-m", "worker.train_rank", "/runs/run-7"]


def test_a_free_port_can_be_bound():
    import socket

    port = launch.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def test_cpu_launches_use_gloo_and_hide_gpus():
    env = launch.launch_env(cpu=True)
    assert env["ACCELERATE_USE_CPU"] == "true" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert int(env[launch.JOB_PID_ENV]) > 0


def test_devices_are_checked_before_anything_starts(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert launch.check_devices(2, "cpu") is True
    assert launch.check_devices(4, "auto") is True  # no GPU: the ranks share the CPU
    with pytest.raises(ValueError, match="device 'cuda' but no GPU is visible"):
        launch.check_devices(2, "cuda")


def test_a_batch_smaller_than_the_processes_is_refused():
    from pydantic import ValidationError

    from shared.contracts.specs import TrainSpec

    with pytest.raises(ValidationError, match=r"batch_size \(2\) must be at least num_processes"):
        TrainSpec.from_preset("tiny", batch_size=2, num_processes=4)


def test_train_in_two_processes_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "text_diffusion.cli",
            "train",
            "--preset",
            "tiny",
            "--num-processes",
            "2",
            "--max-steps",
            "12",
            "--max-texts",
            "200",
            "--eval-every",
            "6",
            "--save-every",
            "6",
            "--eval-ratios",
            "0.5,1.0",
            "--samples",
            "1",
            "--no-progress",
            "--output-dir",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**launch.launch_env(cpu=True), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training in 2 processes on the CPU (gloo)" in proc.stdout
    assert proc.stdout.count("ELBO bound:") == 1  # rank 0 alone reports
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 12 and results["stopped_by"] == "max_steps"
    assert [h["step"] for h in results["history"]] == [6, 12]
    assert (out / "checkpoint-12" / "model.safetensors").is_file()
    state = out / "state"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in state.iterdir()}
