"""The ELBO perplexity bound of a CE(t) grid: pure Python, shared by worker and dashboard.

For a masked diffusion LM the negative log-likelihood per token is bounded by the integral
of CE(t) over t in (0, 1] (MDLM, LLaDA). `elbo_bound` integrates a grid of CE(t) values by
midpoint quadrature. The worker reports it after each evaluation; the dashboard recomputes
it per step from the stored evaluation points to draw the bound over training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class Bound:
    nats_per_token: float  # upper bound on the negative log-likelihood per token
    perplexity: float  # exp(nats_per_token): an upper bound on the per-token perplexity
    bits_per_token: float  # nats_per_token / ln 2


def quadrature_weights(ratios: Sequence[float]) -> list[float]:
    """Midpoint-rule weights of `ratios` (in the order given) for an integral over (0, 1].

    Each grid point, taken in sorted order, stands for the cell that runs from the midpoint
    to its lower neighbour to the midpoint to its upper neighbour; the lowest cell starts at
    0 and the highest ends at 1. The weights are the cell widths and sum to 1. On the grid
    t_k = (k - 1/2) / n this is exactly the composite midpoint rule (weights 1/n); on the
    grid {0.1, ..., 1.0} the end cells are [0, 0.15] and [0.95, 1].
    """
    values = [float(r) for r in ratios]
    if not values:
        raise ValueError("need at least one mask ratio")
    for r in values:
        if not 0.0 < r <= 1.0:
            raise ValueError(f"mask ratio {r} is outside (0, 1]")
    if len(set(values)) != len(values):
        raise ValueError(f"mask ratios must be distinct, got {values}")
    order = sorted(range(len(values)), key=values.__getitem__)
    ts = [values[i] for i in order]
    edges = [0.0, *[(a + b) / 2 for a, b in pairwise(ts)], 1.0]
    weights = [0.0] * len(values)
    for k, i in enumerate(order):
        weights[i] = edges[k + 1] - edges[k]
    return weights


def elbo_bound(ratios: Sequence[float], losses: Sequence[float]) -> Bound:
    """Upper bound on per-token NLL and perplexity from a CE(t) grid.

    ratios: mask ratios t in (0, 1], distinct, any order. losses: CE(t) in nats per masked
    token, same length. Returns exp(sum_k w_k CE(t_k)) where w are `quadrature_weights`:
    PPL <= exp(integral_0^1 CE(t) dt), approximated by midpoint quadrature.
    """
    if len(ratios) != len(losses):
        raise ValueError(f"got {len(ratios)} ratios but {len(losses)} losses")
    weights = quadrature_weights(ratios)
    for loss in losses:
        if not math.isfinite(loss):
            raise ValueError(f"losses must be finite, got {list(losses)}")
    nats = sum(w * float(loss) for w, loss in zip(weights, losses, strict=True))
    perplexity = math.exp(nats) if nats < 700 else math.inf  # exp overflows past ~709
    return Bound(nats, perplexity, nats / math.log(2))
