"""The sweep file format: W&B's shape, every corner of the space validated as a TrainSpec,
a bad space refused naming `parameters.<name>`."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from shared.contracts.specs import TrainSpec
from shared.contracts.sweep import SweepSpec, grid_points, grid_size

WANDB_STYLE = """
name: tiny-lr
base: {preset: tiny, max_steps: 40}
method: bayes
metric: {name: val_nll, goal: minimize}
parameters:
  lr: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}
  masking.mode: {values: [uniform, grid]}
  batch_size: {value: 8}
run_cap: 12
early_terminate: {type: hyperband, min_iter: 1, eta: 3}
"""


def _loc(exc: pytest.ExceptionInfo[ValidationError]) -> tuple:
    return tuple(exc.value.errors()[0]["loc"])


def test_a_wandb_style_file_reads_and_builds_trial_specs():
    spec = SweepSpec.model_validate(yaml.safe_load(WANDB_STYLE))
    assert spec.method == "tpe"  # W&B's "bayes"
    assert spec.parameters["lr"].distribution == "log_uniform_values"
    trial = spec.trial_spec({"lr": 3e-3, "masking.mode": "grid", "batch_size": 8}, seed_index=2)
    assert (trial.lr, trial.masking.mode, trial.batch_size) == (3e-3, "grid", 8)
    assert trial.max_steps == 40 and trial.preset == "tiny"
    assert trial.seed == spec.base_spec().seed + 2


def test_integer_ranges_default_to_int_uniform():
    spec = SweepSpec(name="s", parameters={"warmup_steps": {"min": 0, "max": 20}})
    assert spec.parameters["warmup_steps"].is_int


@pytest.mark.parametrize(
    ("parameters", "loc", "words"),
    [
        ({"nope": {"values": [1]}}, ("parameters", "nope"), "not a TrainSpec field"),
        ({"seed": {"values": [1, 2]}}, ("parameters", "seed"), "seeds"),
        ({"lr": {"min": 1e-4, "max": 200.0}}, ("parameters", "lr"), "200.0"),
        ({"masking.mode": {"values": ["sideways"]}}, ("parameters", "masking.mode"), "sideways"),
        ({"lr": {"min": 0.1, "max": 0.01}}, ("parameters", "lr"), "below max"),
        ({"lr": {"min": 0.0, "max": 0.1, "distribution": "log_uniform_values"}}, None, "min > 0"),
        ({"lr": {"value": 1e-3, "values": [1e-3]}}, ("parameters", "lr"), "exactly one"),
    ],
)
def test_a_bad_space_is_refused_naming_the_parameter(parameters, loc, words):
    with pytest.raises(ValidationError) as exc:
        SweepSpec(name="s", parameters=parameters)
    if loc is not None:
        assert _loc(exc)[: len(loc)] == loc
    assert words in str(exc.value)


def test_a_bad_base_is_refused_naming_base():
    with pytest.raises(ValidationError) as exc:
        SweepSpec(
            name="s",
            base={"preset": "tiny", "batch_size": 0},
            parameters={"lr": {"values": [1e-3]}},
        )
    assert _loc(exc)[:2] == ("base", "batch_size")
    with pytest.raises(ValidationError) as exc:
        SweepSpec(name="s", base={"preset": "huge"}, parameters={"lr": {"values": [1e-3]}})
    assert _loc(exc)[:2] == ("base", "preset")


def test_a_grid_sweep_takes_values_and_lists_every_point_once():
    with pytest.raises(ValidationError, match="takes values"):
        SweepSpec(name="s", method="grid", parameters={"lr": {"min": 1e-4, "max": 1e-2}})
    spec = SweepSpec(
        name="s",
        method="grid",
        parameters={"lr": {"values": [1e-3, 2e-3, 3e-3]}, "warmup_steps": {"values": [0, 5]}},
    )
    points = grid_points(spec)
    assert grid_size(spec) == 6 and len({tuple(sorted(p.items())) for p in points}) == 6


def test_a_boolean_or_nan_is_no_number_in_a_sweep():
    """`min: true` would be read as 1, NaN as a value: refused naming the field."""
    for parameter, where in [
        ({"min": True, "max": 5}, "min"),
        ({"values": [0.1, float("nan")]}, "values"),
    ]:
        with pytest.raises(ValidationError) as raised:
            SweepSpec(name="s", parameters={"lr": parameter})
        assert where in [str(p) for p in raised.value.errors()[0]["loc"]]
    with pytest.raises(ValidationError) as raised:
        SweepSpec(name="s", parameters={"lr": {"values": [0.1]}}, run_cap=True)
    assert raised.value.errors()[0]["loc"] == ("run_cap",)


def test_a_base_from_a_run_is_its_preset_and_what_it_changed():
    from shared.contracts.sweep import base_from_run, sweep_around_run

    run = TrainSpec.from_preset("tiny", lr=3e-3, max_steps=77, masking={"mode": "uniform"})
    base = base_from_run(run.model_dump(mode="json"))
    assert base == {"preset": "tiny", "lr": 3e-3, "max_steps": 77, "masking": {"mode": "uniform"}}
    file = sweep_around_run("my run", run.model_dump(mode="json"))
    spec = SweepSpec.model_validate(file)
    assert spec.base_spec() == run  # the sweep's base is the run, exactly
    lr = spec.parameters["lr"]
    assert lr.distribution == "log_uniform_values"
    assert (lr.min, lr.max) == (pytest.approx(1e-3), pytest.approx(9e-3))


def test_a_judged_metric_gets_its_direction_and_default_samples():
    spec = SweepSpec.model_validate(
        {"name": "q", "parameters": {"lr": {"values": [1e-3]}}, "metric": {"name": "mauve"}}
    )
    assert spec.metric.goal == "maximize" and spec.metric.samples is not None
    assert spec.metric.samples.num_samples >= 100  # what MAUVE needs
    job = spec.metric.samples.generate_spec(7)
    assert (job.checkpoint, job.grid.temperatures, job.grid.steps) == (7, [0.7, 1.0, 1.3], [32])
    assert job.judge == "smollm2-135m" and not job.record_trajectory
    plain = SweepSpec.model_validate({"name": "q", "parameters": {"lr": {"values": [1e-3]}}})
    assert (plain.metric.goal, plain.metric.samples) == ("minimize", None)


@pytest.mark.parametrize(
    "metric, loc, words",
    [
        ({"name": "val_nll", "goal": "maximize"}, ("metric", "goal"), "goal is minimize"),
        ({"name": "mauve", "goal": "minimize"}, ("metric", "goal"), "goal is maximize"),
        ({"name": "val_nll", "samples": {}}, ("metric", "samples"), "judged metric"),
        (
            {"name": "mauve", "samples": {"num_samples": 50}},
            ("metric", "samples", "num_samples"),
            "at least 100",
        ),
        (
            {"name": "judge_ppl_matched", "samples": {"temperatures": [1.0]}},
            ("metric", "samples", "temperatures"),
            "two or more",
        ),
        (
            {"name": "judge_ppl_matched", "samples": {"judge": "none"}},
            ("metric", "samples", "judge"),
            "needs a judge",
        ),
        ({"name": "mauve", "samples": {"steps": 0}}, ("metric", "samples", "steps"), "1"),
        ({"name": "bleu"}, ("metric", "name"), "val_nll"),
    ],
)
def test_a_bad_metric_is_refused_naming_the_field(metric, loc, words):
    with pytest.raises(ValidationError) as exc:
        SweepSpec.model_validate(
            {"name": "q", "parameters": {"lr": {"values": [1e-3]}}, "metric": metric}
        )
    assert _loc(exc) == loc and words in exc.value.errors()[0]["msg"]
