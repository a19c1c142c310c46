"""Unmasking strategies: after each encoder pass, which positions of the block to commit.

The denoising loop (`generate`) runs the model, samples a token at every position the
strategy asked for (`Strategy.candidates`) and hands the strategy a `Pass`; the strategy
answers with the positions to commit and, for random re-masking, the positions to mask
again (`Strategy.select`).

- random: every position of the block is re-predicted each pass, then a random subset is
  re-masked so that the schedule's count stays masked (the seed project's generator,
  see `worker.diffusion`).
- confidence: commit the masked positions whose sampled token is most likely (LLaDA's
  low-confidence remasking).
- margin: largest gap between the two most likely tokens first.
- entropy: lowest entropy of the predicted distribution first.
- threshold: commit every masked position whose confidence exceeds `threshold`, at least
  one per pass and enough to finish within the block's passes (parallel decoding;
  confident models need far fewer passes).

A new strategy is one subclass and one entry in `STRATEGIES` (and its name in
`shared.contracts.specs.Strategy`, which the command line and the forms read).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import get_args

import torch

from shared.contracts.grid import SamplerSpec
from shared.contracts.options import Strategy as StrategyName

from .sampling import log_normalizer, row_chunks


@dataclass
class Pass:
    """What a strategy sees after one encoder pass over A active rows, W positions wide."""

    block: torch.Tensor  # (A, W) bool: positions of the current block
    masked: torch.Tensor  # (A, W) bool: still masked before this pass
    predicted: torch.Tensor  # (A, W) bool: positions given a sampled token; N of them
    logits: torch.Tensor  # (N, V) float at the predicted positions, special tokens -inf
    tokens: torch.Tensor  # (N,) long: the sampled tokens, row-major
    probs: torch.Tensor | None  # (N,) float64 confidence of each token; None if not asked
    keep: torch.Tensor  # (A,) long: the schedule's count to leave masked in the block
    passes_left: torch.Tensor  # (A,) long: passes of the block left, this one included
    generators: list[torch.Generator]  # (A,) each row's own generator


class Strategy(ABC):
    """Decides, after each pass, which positions of the current block to commit."""

    needs_probs = True  # whether `Pass.probs` must be computed

    @classmethod
    def from_sampler(cls, sampler: SamplerSpec) -> Strategy:
        """This strategy with its parameters read from `sampler`; most have none."""
        return cls()

    def candidates(self, block: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """(A, W) bool: the positions to predict this pass. Default: the block's masked ones."""
        return block & masked

    def passes(self, positions: int, passes: int) -> int:
        """Passes to spend on a block of `positions` given a share of `passes`: never more
        passes than positions, as a pass that commits nothing is wasted."""
        return min(passes, positions)

    def finished(self, masked_left: torch.Tensor, passes_left: torch.Tensor) -> torch.Tensor:
        """(A,) bool: whether each row's block is done after a pass; both (A,) long."""
        return masked_left == 0

    @abstractmethod
    def select(self, step: Pass) -> tuple[torch.Tensor, torch.Tensor]:
        """(commit, remask), both (A, W) bool: positions that take their sampled token, and
        positions masked again."""


class RankedStrategy(Strategy):
    """Commits the best-scored masked positions: `count` of them per row."""

    def scores(
        self, logits: torch.Tensor, tokens: torch.Tensor, probs: torch.Tensor
    ) -> torch.Tensor:
        """(N,) float64, higher commits first. logits (N, V), tokens (N,), probs (N,)."""
        return probs

    def count(self, scores: torch.Tensor, step: Pass) -> torch.Tensor:
        """(A,) positions to commit; scores (A, W), -inf off the candidates. Default: the
        schedule's share, all but `keep` of the block's masked positions."""
        return (step.masked & step.block).sum(dim=1) - step.keep

    def select(self, step: Pass) -> tuple[torch.Tensor, torch.Tensor]:
        score = torch.full(step.predicted.shape, float("-inf"), dtype=torch.float64)  # (A, W)
        score[step.predicted] = self.scores(step.logits, step.tokens, step.probs)
        count = self.count(score, step)  # (A,)
        order = torch.argsort(score, dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order).scatter_(
            1, order, torch.arange(score.shape[1]).expand_as(order)
        )
        commit = step.predicted & (ranks < count[:, None])
        return commit, torch.zeros_like(commit)


class ConfidenceStrategy(RankedStrategy):
    """The most likely sampled tokens first (the default `scores`: their probability)."""


class MarginStrategy(RankedStrategy):
    """The largest gap between the two most likely tokens first."""

    def scores(self, logits, tokens, probs):
        top2 = logits.topk(2, dim=-1).values.double()  # (N, 2)
        p = torch.exp(top2 - log_normalizer(logits)[:, None])
        return p[:, 0] - p[:, 1]


class EntropyStrategy(RankedStrategy):
    """The lowest entropy of the predicted distribution first."""

    def scores(self, logits, tokens, probs):
        return -entropy(logits)


class ThresholdStrategy(RankedStrategy):
    """Every position more likely than `threshold`, within a floor and a cap per pass."""

    def __init__(self, threshold: float = 0.9) -> None:
        self.threshold = threshold  # confidence above which a position commits

    @classmethod
    def from_sampler(cls, sampler: SamplerSpec) -> ThresholdStrategy:
        return cls(sampler.threshold)

    def count(self, scores: torch.Tensor, step: Pass) -> torch.Tensor:
        masked_left = (step.masked & step.block).sum(dim=1)  # (A,)
        above = (scores > self.threshold).sum(dim=1)  # (A,)
        # ceil(masked / passes left): the block's passes are a cap, not a target.
        floor = torch.div(
            masked_left + step.passes_left - 1, step.passes_left, rounding_mode="floor"
        )
        return torch.minimum(torch.maximum(above, floor.clamp(min=1)), masked_left)


class RandomStrategy(Strategy):
    """Re-predicts the whole block each pass, then re-masks `keep` random positions."""

    needs_probs = False  # ranks nothing

    def candidates(self, block, masked):
        return block

    def passes(self, positions, passes):
        return passes  # every pass re-predicts, so more passes than positions still count

    def finished(self, masked_left, passes_left):
        return passes_left == 0

    def select(self, step: Pass) -> tuple[torch.Tensor, torch.Tensor]:
        commit = step.block.clone()
        for a, g in enumerate(step.generators):
            k = int(step.keep[a])
            if k == 0:
                continue
            positions = step.block[a].nonzero().squeeze(-1)  # (n,)
            noise = torch.rand(len(positions), generator=g, dtype=torch.float64)
            commit[a, positions[noise.argsort()[:k]]] = False
        return commit, step.block & ~commit


STRATEGIES: dict[str, type[Strategy]] = {
    "random": RandomStrategy,
    "confidence": ConfidenceStrategy,
    "margin": MarginStrategy,
    "entropy": EntropyStrategy,
    "threshold": ThresholdStrategy,
}


def get_strategy(name: str, sampler: SamplerSpec | None = None) -> Strategy:
    """The strategy registered under `name`, built with its parameters from `sampler`
    (their defaults without one); ValueError naming the choices otherwise."""
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
