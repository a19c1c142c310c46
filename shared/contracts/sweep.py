"""What a sweep is: a base training spec, a search space over its fields, a method, a
metric, caps, early stopping. Written by hand in YAML or JSON, in the shape W&B Sweeps
uses (`method`, `metric`, `parameters`, `early_terminate`), so a file written for one
reads almost unchanged here:

    name: tiny-lr
    base: {preset: tiny, max_steps: 200}
    method: tpe                         # grid | random | tpe (W&B's "bayes" reads as tpe)
    metric: {name: val_nll, goal: minimize}   # or mauve / judge_ppl_matched (judged samples)
    parameters:
      lr: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}
      masking.mode: {values: [uniform, grid]}
      batch_size: {value: 16}
    run_cap: 24                         # trials (configurations), each on `seeds` seeds
    concurrency: 2
    early_terminate: {type: hyperband, min_iter: 1, eta: 3}

A parameter names a `TrainSpec` field, dotted for a nested one (`masking.mode`,
`scratch.hidden`). Every corner of the space is validated as a TrainSpec before anything
is stored, so a bad space is refused naming `parameters.<name>`.

A judged metric (`mauve`, `judge_ppl_matched`) has each trial's run sampled once it has
trained: an ordinary generation job on its last checkpoint, one sample set per
temperature of `metric.samples` (`TrialSamples`), whose sets the metric reads.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.contracts.grid import SamplerGrid
from shared.contracts.limits import MAUVE_MIN_TEXTS
from shared.contracts.options import (
    DEFAULT_JUDGE,
    DEFAULT_STRATEGY,
    NO_JUDGE,
    Steps,
    Strategy,
    Temperature,
    check_each,
)
from shared.contracts.presets import PRESETS
from shared.contracts.specs import GenerateSpec, TrainSpec
from shared.contracts.strict import no_boolean_numbers

Method = Literal["grid", "random", "tpe"]
Goal = Literal["minimize", "maximize"]
# val_nll: the held-out NLL in nats per token at the run's last evaluation: the diffusion
# bound, or an AR run's exact NLL (one metric, so both objectives sweep alike).
# mauve: MAUVE of the trial's samples against held-out text, the best over its sampling
# temperatures. judge_ppl_matched: the judge's perplexity of its samples read at held-out
# human text's diversity (`shared.contracts.matched`), the number the frontier page ranks by.
MetricName = Literal["val_nll", "mauve", "judge_ppl_matched"]
# Each metric's one sensible direction: a goal against it would search for the worst model.
METRIC_GOALS: dict[str, Goal] = {
    "val_nll": "minimize",
    "mauve": "maximize",
    "judge_ppl_matched": "minimize",
}
JUDGED_METRICS = ("mauve", "judge_ppl_matched")
METRIC_HELP: dict[str, str] = {
    "val_nll": "held-out NLL, nats per token: the diffusion bound, or an AR run's exact NLL",
    "mauve": "MAUVE of each trial's samples against held-out text, the best temperature's",
    "judge_ppl_matched": "the judge's perplexity of each trial's samples at human text's diversity",
}
MAUVE_MIN_SAMPLES = MAUVE_MIN_TEXTS
Distribution = Literal["uniform", "int_uniform", "log_uniform_values", "int_log_uniform_values"]
Scalar = bool | int | float | str

MAX_TRIALS = 10_000
MAX_GRID = 10_000  # grid points of a grid sweep
MAX_SEEDS = 16


class _Model(BaseModel):
    """No unknown fields, no boolean where a number goes, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return no_boolean_numbers(value, cls.model_fields[info.field_name].annotation)


class Parameter(_Model):
    """One axis: a fixed `value`, a list of `values`, or a `min`..`max` range."""

    value: Scalar | None = None
    values: list[Scalar] | None = Field(None, min_length=1, max_length=1000)
    min: int | float | None = None  # an int pair makes an integer range by default
    max: int | float | None = None
    distribution: Distribution | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        kinds = [self.value is not None, self.values is not None, self.min is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of value, values, or min and max")
        if self.min is not None:
            if self.max is None:
                raise ValueError("a range needs both min and max")
            if not (math.isfinite(self.min) and math.isfinite(self.max)) or self.min >= self.max:
                raise ValueError(f"min ({self.min}) must be below max ({self.max})")
            if self.distribution is None:
                both_int = isinstance(self.min, int) and isinstance(self.max, int)
                self.distribution = "int_uniform" if both_int else "uniform"
            if self.distribution.endswith("log_uniform_values") and self.min <= 0:
                raise ValueError(f"a log range needs min > 0, not {self.min}")
        elif self.max is not None or self.distribution is not None:
            raise ValueError("max and distribution belong to a min..max range")
        return self

    @property
    def is_int(self) -> bool:
        return bool(self.distribution and self.distribution.startswith("int_"))

    def corners(self) -> list[Scalar]:
        """The values that bound this axis: every listed value, or a range's two ends."""
        if self.value is not None:
            return [self.value]
        if self.values is not None:
            return list(self.values)
        assert self.min is not None and self.max is not None
        ends = [self.min, self.max]
        return [int(v) for v in ends] if self.is_int else ends


class TrialSamples(_Model):
    """The samples a judged metric reads: unconditional, `num_samples` of `length` tokens at
    each temperature (top-k 50); a diffusion trial unmasks by `strategy` over `steps`
    passes, an AR trial samples token by token. Judged by `judge` (`none`: no judge
    perplexity, which only `mauve` can do without)."""

    temperatures: list[float] = Field([0.7, 1.0, 1.3], min_length=1, max_length=8)
    steps: Steps = 32
    strategy: Strategy = DEFAULT_STRATEGY
    num_samples: int = Field(MAUVE_MIN_SAMPLES, ge=1, le=1000)
    length: int = Field(32, ge=1, le=256)
    judge: str = Field(DEFAULT_JUDGE, min_length=1, max_length=500)

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        return check_each(v, Temperature, "temperatures", "temperature")

    def generate_spec(self, checkpoint: int) -> GenerateSpec:
        """The generation job of one trial run's checkpoint."""
        return GenerateSpec(
            checkpoint=checkpoint,
            grid=SamplerGrid(
                temperatures=self.temperatures,
                steps=[self.steps],
                strategies=[self.strategy],
                samplings=["topk"],
            ),
            length=self.length,
            num_samples=self.num_samples,
            record_trajectory=False,
            judge=self.judge,
        )


class Metric(_Model):
    """What a sweep optimises. `goal` defaults to the metric's direction (and may only
    repeat it); `samples` says how a judged metric's samples are drawn."""

    name: MetricName = "val_nll"
    goal: Goal | None = None
    samples: TrialSamples | None = None

    @model_validator(mode="after")
    def _fits(self) -> Metric:
        natural = METRIC_GOALS[self.name]
        if self.goal is None:
            self.goal = natural
        elif self.goal != natural:
            better = "lower" if natural == "minimize" else "higher"
            raise _error(
                ("goal",), f"{self.name} is better {better}: its goal is {natural}, not {self.goal}"
            )
        if self.name not in JUDGED_METRICS:
            if self.samples is not None:
                raise _error(
                    ("samples",),
                    f"samples belong to a judged metric ({', '.join(JUDGED_METRICS)}), "
                    f"not {self.name}",
                )
            return self
        if self.samples is None:
            self.samples = TrialSamples()
        if self.name == "mauve" and self.samples.num_samples < MAUVE_MIN_SAMPLES:
            raise _error(
                ("samples", "num_samples"),
                f"MAUVE needs at least {MAUVE_MIN_SAMPLES} samples, got {self.samples.num_samples}",
            )
        if self.name == "judge_ppl_matched":
            if self.samples.judge.strip().lower() == NO_JUDGE:
                raise _error(("samples", "judge"), "judge_ppl_matched needs a judge, not none")
            if len(self.samples.temperatures) < 2:
                raise _error(
                    ("samples", "temperatures"),
                    "judge_ppl_matched reads a line over temperatures at human text's "
                    "diversity; give two or more",
                )
        return self


class EarlyTerminate(_Model):
    """Asynchronous successive halving over evaluations (Optuna's pruners): `min_iter`
    evaluations before the first cut, keep 1/`eta` at each rung; `hyperband` runs several
    such brackets with different first cuts."""

    type: Literal["hyperband", "successive_halving"] = "hyperband"
    min_iter: int = Field(1, ge=1, le=1000)
    eta: int = Field(3, ge=2, le=10)


class SweepSpec(_Model):
    name: str = Field(..., min_length=1, max_length=200)
    base: dict[str, Any] = Field(
        default_factory=lambda: {"preset": "tiny"},
        description="A training spec: `preset` plus any TrainSpec fields it overrides.",
    )
    method: Method = "tpe"
    metric: Metric = Field(default_factory=Metric)
    parameters: dict[str, Parameter] = Field(..., min_length=1, max_length=64)
    run_cap: int = Field(24, ge=1, le=MAX_TRIALS, description="Trials (configurations) at most.")
    concurrency: int = Field(2, ge=1, le=256, description="Trials running at once.")
    seeds: int = Field(1, ge=1, le=MAX_SEEDS, description="Runs per trial, on seeds base+0..N-1.")
    budget_minutes: float | None = Field(
        None, gt=0, le=60 * 24 * 30, description="Start no trial after this much wall clock."
    )
    early_terminate: EarlyTerminate | None = None
    queue: str | None = Field(None, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") == "bayes":  # W&B's name for it
            data = {**data, "method": "tpe"}
        return data

    @model_validator(mode="after")
    def _space_fits(self) -> SweepSpec:
        base = self.base_spec()
        for name, param in self.parameters.items():
            _check_axis(base, name, param)
        if self.method == "grid":
            unranged = [n for n, p in self.parameters.items() if p.min is not None]
            if unranged:
                raise _error(
                    ("parameters", unranged[0]), "a grid sweep takes values, not a min..max range"
                )
            if grid_size(self) > MAX_GRID:
                raise _error(("parameters",), f"the grid has more than {MAX_GRID} points")
        return self

    def base_spec(self) -> TrainSpec:
        data = dict(self.base)
        preset = data.pop("preset", "tiny")
        if preset not in PRESETS:
            raise _error(("base", "preset"), f"choose one of {', '.join(PRESETS)}")
        try:
            return TrainSpec.from_preset_data(preset, data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _error(("base", *first["loc"]), first["msg"]) from None

    def trial_spec(self, params: dict[str, Any], seed_index: int = 0) -> TrainSpec:
        """The base spec with `params` applied (dotted names into nested fields) and the
        trial's `seed_index`-th seed."""
        spec = self.base_spec()
        data = spec.model_dump(mode="json")
        for name, value in params.items():
            _set_dotted(data, name, value)
        data["seed"] = int(data["seed"]) + seed_index
        return TrainSpec.model_validate(data)


def base_from_run(run_spec: dict[str, Any]) -> dict[str, Any]:
    """A sweep `base` that is a stored run's spec: its preset and the fields where the run
    differs from that preset (so the file stays short and says what the run changed). A
    field added to TrainSpec since the run was stored keeps its default."""
    preset = run_spec.get("preset") if run_spec.get("preset") in PRESETS else "tiny"
    defaults = TrainSpec.from_preset(preset).model_dump(mode="json")
    spec = TrainSpec.from_preset_data(preset, run_spec).model_dump(mode="json")
    base: dict[str, Any] = {"preset": preset}
    for key, value in spec.items():
        if key == "masking":
            changed = {k: v for k, v in value.items() if defaults["masking"].get(k) != v}
            if changed:
                base["masking"] = changed
        elif key != "preset" and defaults.get(key) != value:
            base[key] = value
    return base


def sweep_around_run(name: str, run_spec: dict[str, Any]) -> dict[str, Any]:
    """A sweep file (as a dict) whose base is run `name`'s spec, searching its learning
    rate over a decade around the run's own: a start the user edits, never run as is
    without them seeing it (the dashboard's "Sweep" button fills the form with it)."""
    base = base_from_run(run_spec)
    lr = float(TrainSpec.from_preset_data(base["preset"], base).lr)
    return {
        "name": f"{name} sweep"[:200],
        "base": base,
        "method": "tpe",
        "metric": {"name": "val_nll", "goal": "minimize"},
        "parameters": {"lr": {"min": lr / 3, "max": lr * 3, "distribution": "log_uniform_values"}},
        "run_cap": 12,
        "concurrency": 2,
        "seeds": 1,
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3},
    }


def grid_size(spec: SweepSpec) -> int:
    return math.prod(len(p.corners()) for p in spec.parameters.values())


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    names = list(spec.parameters)
    axes = [spec.parameters[n].corners() for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def _set_dotted(data: dict[str, Any], name: str, value: Any) -> None:
    *parents, leaf = name.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


def _check_axis(base: TrainSpec, name: str, param: Parameter) -> None:
    """Refuse an axis whose name is no TrainSpec field or whose corners do not validate."""
    top = name.split(".", 1)[0]
    if top not in TrainSpec.model_fields or top in ("preset", "seed"):
        hint = " (seeds are the `seeds` setting)" if top == "seed" else ""
        raise _error(("parameters", name), f"{name!r} is not a TrainSpec field to sweep{hint}")
    for value in param.corners():
        data = base.model_dump(mode="json")
        _set_dotted(data, name, value)
        try:
            TrainSpec.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _error(("parameters", name), f"{value!r}: {first['msg']}") from None


def _error(loc: tuple[Any, ...], message: str) -> ValidationError:
    return ValidationError.from_exception_data(
        "SweepSpec",
        [{"type": "value_error", "loc": loc, "input": None, "ctx": {"error": ValueError(message)}}],
    )
