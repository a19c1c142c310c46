"""Unmasking schedules: how many generated positions stay masked after each pass.

A schedule maps progress u in [0, 1] (0 = before the first pass, 1 = after the last)
to the fraction of generated positions still masked: 1 at u=0, 0 at u=1, monotone
non-increasing in between. `masked_counts` turns a schedule into integer counts for
`n` positions and `steps` passes; the generator commits `previous - count` positions
per pass (or, for random re-masking, keeps `count` masked).

- linear: the same number of tokens per pass (the seed project's default; LLaDA).
- cosine: cos(pi/2 * u), few commitments early, more late, when context is richer (MaskGIT).
- exponential: many commitments early, few late; masked fraction
  (exp(-k u) - exp(-k)) / (1 - exp(-k)) with k = 5.
- loglinear: masked fraction log(1 + c (1 - u)) / log(1 + c) with c = 100: stronger back-loading
  than cosine, the fewest early commitments. (MDLM's "log-linear" noise has a mask probability
  linear in time, which is `linear` here; this curve is linear in log(1 + c * remaining).)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import get_args

from shared.contracts.options import Schedule as ScheduleName


class Schedule(ABC):
    """Fraction of generated positions still masked as a function of progress u in [0, 1]."""

    name: str

    @abstractmethod
    def masked_fraction(self, u: float) -> float:
        """1 at u=0, 0 at u=1, non-increasing."""

    def __call__(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if u == 0.0:
            return 1.0
        if u == 1.0:
            return 0.0
        return min(max(self.masked_fraction(u), 0.0), 1.0)


class LinearSchedule(Schedule):
    name = "linear"

    def masked_fraction(self, u: float) -> float:
        return 1.0 - u


class CosineSchedule(Schedule):
    name = "cosine"

    def masked_fraction(self, u: float) -> float:
        return math.cos(math.pi / 2 * u)


class ExponentialSchedule(Schedule):
    name = "exponential"

    def __init__(self, rate: float = 5.0) -> None:
        self.rate = rate  # 5: about half the tokens are committed by u = 0.14

    def masked_fraction(self, u: float) -> float:
        floor = math.exp(-self.rate)
        return (math.exp(-self.rate * u) - floor) / (1.0 - floor)


class LogLinearSchedule(Schedule):
    name = "loglinear"

    def __init__(self, scale: float = 100.0) -> None:
        self.scale = scale  # 100: the first 10% of passes commit only ~2% of the tokens

    def masked_fraction(self, u: float) -> float:
        return math.log1p(self.scale * (1.0 - u)) / math.log1p(self.scale)


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (LinearSchedule, CosineSchedule, ExponentialSchedule, LogLinearSchedule)
}


def get_schedule(name: str) -> Schedule:
    """The schedule registered under `name`; ValueError naming the choices otherwise."""
    try:
        return SCHEDULES[name]()
    except KeyError:
        raise ValueError(
            f"unknown schedule {name!r}; choose one of {', '.join(get_args(ScheduleName))}"
        ) from None


def masked_counts(schedule: Schedule | str, n: int, steps: int) -> list[int]:
    """How many of `n` positions stay masked after each of `steps` passes.

    Non-increasing, last is 0. Where n >= steps every pass commits at least one position
    (a pass that commits nothing would be a wasted forward pass), so the rounded schedule
    is nudged where needed; where n < steps the later passes commit nothing.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if isinstance(schedule, str):
        schedule = get_schedule(schedule)
    counts: list[int] = []
    previous = n
    for s in range(steps):
        target = round(n * schedule((s + 1) / steps))
        most = max(previous - 1, 0)  # commit at least one while any are left
        least = min(steps - 1 - s, most)  # leave one for each later pass when possible
        previous = min(max(target, least), most)
        counts.append(previous)
    counts[-1] = 0
    return counts
