"""The speed-quality frontier's spec: a grid over steps, strategies and temperatures that
expands into one generation job per checkpoint (`shared.frontier` submits them)."""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator, model_validator

from .grid import SamplerGrid
from .limits import (
    MAX_FRONTIER_CHARS,
    MAX_FRONTIER_CHECKPOINTS,
    MAX_GRID,
    MAX_NUM_SAMPLES,
    MAX_SAMPLES,
)
from .options import (
    DEFAULT_STRATEGY,
    DEVICE_HELP,
    Device,
    SpecModel,
    Steps,
    Strategy,
    Temperature,
    check_each,
    interval,
    nonempty_unique,
)
from .specs import GenerateSpec, field_error


class FrontierSpec(SpecModel):
    """A speed-quality frontier: every checkpoint sampled at every point of a grid over
    steps, strategies and temperatures, each point one sample set with its cost (forward
    passes, seconds per sample) and quality (judge perplexity with entropy, MAUVE).

    It expands into ordinary generation jobs, one per checkpoint, sharing `name`
    (`generate_specs`). An AR checkpoint has no steps or strategies: its job samples each
    temperature once, token by token.
    """

    name: str | None = Field(
        None,
        max_length=MAX_FRONTIER_CHARS,
        description="Names the frontier (letters, digits, '-_.'); default: frontier-<time>.",
    )
    checkpoints: list[int | str] = Field(
        description="Checkpoints to sample (ids or artifact URLs), diffusion and AR.",
    )
    steps: list[int] = Field(
        [8, 16, 32],
        max_length=MAX_GRID,
        description=f"Denoising passes, each in {interval(Steps)}.",
    )
    strategies: list[Strategy] = Field(
        [DEFAULT_STRATEGY, "confidence", "random"],
        max_length=MAX_GRID,
        description="What to unmask first.",
    )
    temperatures: list[float] = Field(
        [0.7, 1.0],
        max_length=MAX_GRID,
        description=f"Sampling temperatures, each in {interval(Temperature)}: two or more "
        "draw each line's quality against diversity, read at human text's diversity.",
    )
    prompts: list[str] = Field([""], description="Prefixes to continue ('' for none).")
    length: int = Field(32, ge=1, le=1024, description="Tokens to generate after each prompt.")
    num_samples: int = Field(
        100, ge=1, le=MAX_NUM_SAMPLES, description="Samples per prompt and point (MAUVE needs 100)."
    )
    batch_size: int = Field(16, ge=1, le=1024)
    judge: str | None = GenerateSpec.model_fields["judge"]
    device: Device = Field("auto", description=DEVICE_HELP)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return GenerateSpec._frontier(v)

    _judge = field_validator("judge")(GenerateSpec._judge.__func__)
    _prompts = field_validator("prompts")(GenerateSpec._prompts.__func__)

    # Each axis checked on its own, so a form with several bad axes hears of all of them.
    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        return check_each(v, Steps, "steps", "steps")

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str]) -> list[str]:
        return nonempty_unique(v, "strategies")

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        return check_each(v, Temperature, "temperatures", "temperature")

    @field_validator("checkpoints")
    @classmethod
    def _checkpoints(cls, v: list[int | str]) -> list[int | str]:
        if not 1 <= len(v) <= MAX_FRONTIER_CHECKPOINTS:
            raise ValueError(
                f"give between 1 and {MAX_FRONTIER_CHECKPOINTS} checkpoints, got {len(v)}"
            )
        for c in v:
            GenerateSpec._checkpoint(c)
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _fits(self) -> FrontierSpec:
        """Each job it expands into must be a valid generation job: the grid's bounds and
        the sample limit are checked here, reported on the field that breaks them."""
        try:
            grid = self.grid()
        except ValidationError as exc:
            err = exc.errors()[0]
            # A grid too large as a whole is blamed on its longest list: the one to shorten.
            field = err["loc"][0] if err["loc"] else self._longest_axis()
            field_error(type(self).__name__, field, getattr(self, field, None), err["msg"])
        total = grid.size() * len(self.prompts) * self.num_samples
        if total > MAX_SAMPLES:
            field_error(
                type(self).__name__,
                "num_samples",
                self.num_samples,
                f"{grid.size()} points x {len(self.prompts)} prompts x {self.num_samples} "
                f"samples = {total} samples per checkpoint; at most {MAX_SAMPLES}",
            )
        return self

    def _longest_axis(self) -> str:
        axes = ("steps", "strategies", "temperatures")
        return max(axes, key=lambda name: len(getattr(self, name)))

    def grid(self, causal: bool = False) -> SamplerGrid:
        """The sampler grid of one checkpoint's job; `causal`: temperatures only."""
        if causal:
            return SamplerGrid(
                temperatures=self.temperatures,
                steps=[min(self.length, 1024)],
                strategies=self.strategies[:1],
            )
        return SamplerGrid(
            steps=self.steps, strategies=self.strategies, temperatures=self.temperatures
        )

    def generate_spec(self, checkpoint: int | str, name: str, causal: bool) -> GenerateSpec:
        """The generation job of `checkpoint` in frontier `name`."""
        return GenerateSpec(
            checkpoint=checkpoint,
            prompts=self.prompts,
            grid=self.grid(causal),
            length=self.length,
            num_samples=self.num_samples,
            batch_size=self.batch_size,
            record_trajectory=False,
            device=self.device,
            judge=self.judge,
            frontier=name,
        )
