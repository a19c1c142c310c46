"""Unmasking strategies: after each encoder pass, which masked positions to commit.

A strategy is a *score* per predicted position (higher commits first) and, where needed, a
*count* of positions to commit per row; `commit_ranked` takes the top `count` by score.
The denoising loop (`generate`) does the rest: it runs the model, samples a token at every
masked position of the block, and asks the strategy which of them keep their token.

- confidence: the sampled tokens that are most likely first (LLaDA's low-confidence
  remasking).
- margin: largest gap between the two most likely tokens first.
- entropy: lowest entropy of the predicted distribution first.
- threshold: every position whose confidence exceeds `threshold`, at least enough to finish
  within the block's passes and at least one (parallel decoding; confident models need far
  fewer passes).

`random` is not a ranking but the loop's other mode, re-masking (`generate.py`): every
position of the block is re-predicted each pass and a random subset masked again (the seed
project's generator). It is named here (`RANDOM`) so the declared names stay in one place.

A new strategy is one subclass and one entry in `STRATEGIES` (and its name in
`shared.contracts.options.Strategy`, which the command line and the forms read).
"""

from __future__ import annotations

from typing import get_args

import torch

from shared.contracts.grid import SamplerSpec
from shared.contracts.options import Strategy as StrategyName

from .sampling import log_normalizer, row_chunks

RANDOM = "random"  # the re-masking mode of the loop, not a `Strategy`


class Strategy:
    """Ranks the predicted positions of a pass: the best `count` of each row commit."""

    needs_probs = True  # whether the loop must compute each sampled token's probability

    @classmethod
    def from_sampler(cls, sampler: SamplerSpec) -> Strategy:
        """This strategy with its parameters read from `sampler`; most have none."""
        return cls()

    def score(
        self, logits: torch.Tensor, tokens: torch.Tensor, probs: torch.Tensor
    ) -> torch.Tensor:
        """(N,) float64, higher commits first. logits (N, V) with special tokens -inf,
        tokens (N,) the sampled ones, probs (N,) their probability. Default: probs."""
        return probs

    def count(
        self,
        scores: torch.Tensor,
        masked_left: torch.Tensor,
        keep: torch.Tensor,
        passes_left: torch.Tensor,
    ) -> torch.Tensor:
        """(A,) positions to commit per row. scores (A, W), -inf off the predicted ones;
        masked_left (A,) masked positions of the block; keep (A,) how many the schedule
        leaves masked after this pass; passes_left (A,) this one included. Default: the
        schedule's share."""
        return masked_left - keep


def commit_ranked(
    strategy: Strategy,
    predicted: torch.Tensor,
    logits: torch.Tensor,
    tokens: torch.Tensor,
    probs: torch.Tensor | None,
    keep: torch.Tensor,
    passes_left: torch.Tensor,
) -> torch.Tensor:
    """(A, W) bool: the predicted positions (A, W) that commit this pass, the best-scored
    `strategy.count` of each row (ties: leftmost first). logits (N, V), tokens and probs
    (N,) for the N predicted positions in row-major order."""
    score = torch.full(predicted.shape, float("-inf"), dtype=torch.float64)  # (A, W)
    score[predicted] = strategy.score(logits, tokens, probs)
    count = strategy.count(score, predicted.sum(dim=1), keep, passes_left)  # (A,)
    return predicted & top(score, count)


def top(score: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(A, W) bool: the `count[a]` highest of each row of `score` (A, W); stable."""
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(score.shape[1]).expand_as(order)
    )
    return ranks < count[:, None]


class ConfidenceStrategy(Strategy):
    """The most likely sampled tokens first (the default `score`: their probability)."""


class MarginStrategy(Strategy):
    """The largest gap between the two most likely tokens first."""

    def score(self, logits, tokens, probs):
        top2 = logits.topk(2, dim=-1).values.double()  # (N, 2)
        p = torch.exp(top2 - log_normalizer(logits)[:, None])
        return p[:, 0] - p[:, 1]


class EntropyStrategy(Strategy):
    """The lowest entropy of the predicted distribution first."""

    def score(self, logits, tokens, probs):
        return -entropy(logits)


class ThresholdStrategy(Strategy):
    """Every position more likely than `threshold`, within a floor and a cap per pass."""

    def __init__(self, threshold: float = 0.9) -> None:
        self.threshold = threshold  # confidence above which a position commits

    @classmethod
    def from_sampler(cls, sampler: SamplerSpec) -> ThresholdStrategy:
        return cls(sampler.threshold)

    def count(self, scores, masked_left, keep, passes_left):
        above = (scores > self.threshold).sum(dim=1)  # (A,)
        # ceil(masked / passes left): the block's passes are a cap, not a target.
        floor = torch.div(masked_left + passes_left - 1, passes_left, rounding_mode="floor")
        return torch.minimum(torch.maximum(above, floor.clamp(min=1)), masked_left)


STRATEGIES: dict[str, type[Strategy]] = {
    "confidence": ConfidenceStrategy,
    "margin": MarginStrategy,
    "entropy": EntropyStrategy,
    "threshold": ThresholdStrategy,
}


def get_strategy(name: str, sampler: SamplerSpec | None = None) -> Strategy:
    """The ranked strategy registered under `name`, built with its parameters from `sampler`
    (their defaults without one); ValueError naming the choices otherwise (`random` is the
    loop's re-masking mode, which ranks nothing)."""
    if name == RANDOM:
        raise ValueError(f"{RANDOM!r} re-masks at random and ranks nothing: no Strategy")
    if name not in STRATEGIES:
        choices = ", ".join(get_args(StrategyName))
        raise ValueError(f"unknown strategy {name!r}; choose one of {choices}")
    cls = STRATEGIES[name]
    return cls() if sampler is None else cls.from_sampler(sampler)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """(N,) float64 entropy (nats) of softmax(logits) for logits (N, V)."""
    out = torch.empty(logits.shape[0], dtype=torch.float64)
    for rows in row_chunks(logits):
        logp = torch.log_softmax(logits[rows].double(), dim=-1)
        out[rows] = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(dim=-1)
    return out
