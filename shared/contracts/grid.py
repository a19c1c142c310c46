"""Grids: the mask ratios training and evaluation use, and the sampler grid a generation
job runs (every combination of its lists of settings)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .limits import MAX_GRID
from .options import (
    DEFAULT_STRATEGY,
    BlockLength,
    Sampling,
    Schedule,
    Seed,
    SpecModel,
    Steps,
    Strategy,
    Temperature,
    Threshold,
    TopK,
    TopP,
    check_each,
    interval,
    nonempty_unique,
)

DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Evaluation adds 15%: BERT's ratio, where masked-token accuracy is usually quoted.
DEFAULT_EVAL_GRID = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def check_ratios(ratios: list[float], field: str) -> list[float]:
    if not ratios:
        raise ValueError(f"{field} must hold at least one mask ratio")
    for r in ratios:
        if not 0.0 < r <= 1.0:
            raise ValueError(f"{field}: mask ratio {r} is outside (0, 1]")
    return sorted(set(ratios))


class SamplerSpec(SpecModel):
    """How one generation run picks and commits tokens."""

    steps: Steps = Field(10, description="Denoising passes (max passes for threshold).")
    schedule: Schedule = "linear"
    sampling: Sampling = "topk"
    temperature: Temperature = 0.7
    top_k: TopK = 50
    top_p: TopP = 0.9
    strategy: Strategy = DEFAULT_STRATEGY
    threshold: Threshold = Field(0.9, description="Confidence to commit (threshold).")
    block_length: BlockLength | None = Field(
        None, description="Semi-autoregressive blocks of this many tokens."
    )


class SamplerGrid(SpecModel):
    """Lists of sampler settings; a generation job runs every combination of them."""

    schedules: list[Schedule] = Field(
        ["linear"], max_length=MAX_GRID, description="Unmasking schedules."
    )
    samplings: list[Sampling] = Field(
        ["topk"], max_length=MAX_GRID, description="Token sampling rules."
    )
    temperatures: list[float] = Field(
        [0.7],
        max_length=MAX_GRID,
        description=f"Sampling temperatures, each in {interval(Temperature)}.",
    )
    steps: list[int] = Field(
        [10], max_length=MAX_GRID, description=f"Denoising passes, each in {interval(Steps)}."
    )
    strategies: list[Strategy] = Field(
        [DEFAULT_STRATEGY], max_length=MAX_GRID, description="What to unmask first."
    )
    seeds: list[int] = Field(
        [0], max_length=MAX_GRID, description="Base seeds; sample j uses seed + j."
    )
    top_k: TopK = 50
    top_p: TopP = 0.9
    threshold: Threshold = 0.9
    block_length: BlockLength | None = None

    @field_validator("schedules", "samplings", "strategies")
    @classmethod
    def _names(cls, v: list[str], info: Any) -> list[str]:
        return nonempty_unique(v, info.field_name)

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        return check_each(v, Temperature, "temperatures", "temperature")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        return check_each(v, Steps, "steps", "steps")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return check_each(v, Seed, "seeds", "seed")

    @model_validator(mode="after")
    def _bounded(self) -> SamplerGrid:
        if self.size() > MAX_GRID:
            raise ValueError(
                f"the sampler grid has {self.size()} combinations; at most {MAX_GRID} per job "
                "(split it into several jobs)"
            )
        return self

    def size(self) -> int:
        """Number of combinations: the product of the list lengths."""
        n = 1
        for values in (
            self.schedules,
            self.samplings,
            self.temperatures,
            self.steps,
            self.strategies,
            self.seeds,
        ):
            n *= len(values)
        return n


class Combination(BaseModel):
    """One point of a sampler grid: its index in the grid, the sampler, the base seed."""

    model_config = ConfigDict(frozen=True)

    index: int
    sampler: SamplerSpec
    seed: int

    def settings(self) -> dict[str, Any]:
        """The JSON stored with its sample set: the sampler's fields plus the seed."""
        return {**self.sampler.model_dump(mode="json"), "seed": self.seed}
