"""`text-diffusion sweep`: a sweep from a YAML file, listed, shown, steered and exported
back to a file that creates the same sweep; a bad file is one line naming the field."""

from __future__ import annotations

import pytest
import yaml

from text_diffusion.cli import main as run_cli

FILE = """
name: cli-sweep
base:
  preset: tiny
  dataset: {dataset}
  max_steps: 20
  eval_every: 10
  scratch: {{layers: 1, hidden: 32, heads: 2, vocab_size: 400}}
method: grid
parameters:
  lr: {{values: [0.001, 0.002, 0.003]}}
run_cap: 3
concurrency: 2
"""

embedded = pytest.mark.parametrize("job_env", ["embedded"], indirect=True)


@embedded
def test_submit_list_show_steer_export(job_env, tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(FILE.format(dataset=job_env))
    assert run_cli(["sweep", "submit", str(path)]) == 0
    assert "sweep 1 created; first trials queued as jobs 1, 2" in capsys.readouterr().out

    assert run_cli(["sweep", "list"]) == 0
    assert "cli-sweep\trunning\tgrid\t2/3 trials" in capsys.readouterr().out
    assert run_cli(["sweep", "show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "trials: 2 running" in shown and "trial\tstate\tvalue\tsteps\tlr\truns" in shown

    assert run_cli(["sweep", "pause", "1"]) == 0
    assert capsys.readouterr().out == "sweep 1 is paused\n"
    assert run_cli(["sweep", "extend", "1", "--trials", "2"]) == 0
    assert "up to 3 trials" in capsys.readouterr().out  # a grid of 3 caps it at 3

    assert run_cli(["sweep", "export", "1"]) == 0
    exported = yaml.safe_load(capsys.readouterr().out)
    assert exported["parameters"] == {"lr": {"values": [0.001, 0.002, 0.003]}}
    assert exported["method"] == "grid" and exported["name"] == "cli-sweep"


@embedded
def test_a_bad_file_is_one_line_naming_the_field(job_env, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(FILE.format(dataset=job_env).replace("lr:", "nope:"))
    assert run_cli(["sweep", "submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "parameters.nope" in err and "not a TrainSpec field" in err
    assert len(err.strip().splitlines()) == 1
    assert run_cli(["sweep", "resume", "7"]) == 2
    assert "no sweep with id 7" in capsys.readouterr().err


@embedded
def test_a_sweep_based_on_a_run(job_env, tmp_path, capsys):
    from shared import submit
    from shared.contracts.sweep import SweepSpec
    from shared.db import session_scope
    from shared.models import Sweep
    from tests.jobs.helpers import tiny_train_spec

    run = submit.submit_train(tiny_train_spec(job_env, lr=0.004, max_steps=20, eval_every=10))
    path = tmp_path / "around.yaml"
    path.write_text("name: around\nbase: {warmup_steps: 3}\nparameters: {lr: {values: [1.0e-3]}}\n")
    assert run_cli(["sweep", "submit", str(path), "--base-run", str(run.run_id)]) == 0
    with session_scope() as s:
        base = SweepSpec.model_validate(s.query(Sweep).one().spec).base_spec()
    assert base.lr == 0.004 and base.warmup_steps == 3  # the run's, then the file's
    assert base.dataset == str(job_env) and base.scratch.layers == 2
    assert run_cli(["sweep", "submit", str(path), "--base-run", "999"]) == 2
    assert "no run with id 999" in capsys.readouterr().err
