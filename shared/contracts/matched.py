"""Quality read at matched diversity: a line's judge perplexity at human text's diversity.

Judge perplexity rewards repetition, so a raw perplexity ranks a looping sampler first. A
sampler's temperature (or top-p) trades quality for diversity along a line; reading every
line at one diversity, that of held-out human text under the same judge, ranks lines as a
reader would (the quality-diversity curves of the GAN-for-text literature).

`matched_reading` takes one line's points (each: diversity, judge perplexity) and human
text's diversity, and interpolates log perplexity linearly in diversity between the two
points around it. Diversity is the unigram entropy (nats) by default; the repetition at
the matched point is interpolated the same way, so a reader sees whether the line loops
there. Pure: the frontier page, the compare page, the runs list and the benchmark share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Two points closer than this in diversity are one point (no slope to interpolate on).
_EPS = 1e-9


@dataclass(frozen=True)
class LinePoint:
    diversity: float  # unigram entropy (nats), in the judge's tokens
    judge_ppl: float
    repetition: float | None = None  # share of repeated 4-grams
    temperature: float | None = None


@dataclass(frozen=True)
class MatchedReading:
    judge_ppl: float | None  # at human diversity; None when the line never reaches it
    repetition: float | None  # interpolated at the same place, when the points have it
    human_diversity: float
    between: tuple[float, float] | None  # the temperatures (or diversities) interpolated
    reason: str | None  # why there is no reading

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def matched_reading(points: Sequence[LinePoint], human_diversity: float) -> MatchedReading:
    """Judge perplexity of a line at `human_diversity`, interpolated between the two points
    around it (log perplexity linear in diversity), or None with the reason when every
    point is less diverse, or every point more, than human text."""
    usable = sorted(
        (p for p in points if _finite(p.diversity) and _finite(p.judge_ppl) and p.judge_ppl > 0),
        key=lambda p: p.diversity,
    )
    if not usable:
        return MatchedReading(None, None, human_diversity, None, "no judged point on this line")
    low, high = usable[0], usable[-1]
    if high.diversity < human_diversity - _EPS:
        return MatchedReading(
            None,
            None,
            human_diversity,
            None,
            f"never reaches human diversity: its most diverse point has entropy "
            f"{high.diversity:.2f} < human text's {human_diversity:.2f}",
        )
    if low.diversity > human_diversity + _EPS:
        return MatchedReading(
            None,
            None,
            human_diversity,
            None,
            f"always more diverse than human text: its least diverse point has entropy "
            f"{low.diversity:.2f} > human text's {human_diversity:.2f}",
        )
    for a, b in zip(usable, usable[1:] + usable[-1:], strict=True):
        if a.diversity - _EPS <= human_diversity <= b.diversity + _EPS:
            break
    span = b.diversity - a.diversity
    w = 0.0 if span < _EPS else (human_diversity - a.diversity) / span
    w = min(1.0, max(0.0, w))
    ppl = math.exp((1 - w) * math.log(a.judge_ppl) + w * math.log(b.judge_ppl))
    rep = None
    if _finite(a.repetition) and _finite(b.repetition):
        rep = (1 - w) * a.repetition + w * b.repetition
    ends = (a.temperature, b.temperature)
    between = ends if None not in ends else (a.diversity, b.diversity)
    return MatchedReading(ppl, rep, human_diversity, between, None)
