"""A fixed, seeded, stratified estimate of the ELBO bound, and paired comparisons.

The bound. A block with n maskable tokens has negative log-likelihood at most
sum_{k=1..n} CE_k, where CE_k is the expected mean cross-entropy of the masked tokens when k
of the n, chosen uniformly, are masked (the absorbing-diffusion ELBO in its exact discrete
form; MDLM's integral of CE(t) over (0, 1] is its limit). Per token: the mean of CE_k over
k = 1..n, the whole range of mask ratios.

The estimator (LLaDA's `get_log_likelihood`). Each block is scored in `draws` passes; in
pass j it has k_j tokens masked, stratified over 1..n across the passes:
k_j = floor(((u + j / draws) mod 1) * n) + 1 with one uniform u per block. Each k_j is
uniform on 1..n, so the mean over passes of the pass's mean masked CE is an unbiased
estimate of the block's per-token bound, with much less variance than one random ratio per
block, and far less bias than a coarse quadrature grid. All draws come from generators
seeded by (seed, pass): two models scored with the same seed see the same masks on the
same tokens, so their difference (`paired_difference`) cancels most of the Monte-Carlo noise.

It reads nothing about how the model was trained: a training-t distribution (uniform,
clipped, bell) changes the model, never this estimate, which always covers the full range.
`causal_scores` gives an AR model's exact NLL on the same blocks and tokens, to pair with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .causal import next_token_labels, scored_positions
from .masking import (
    IGNORE_INDEX,
    assemble,
    choose_masks,
    maskable_positions,
    seeded_generator,
    special_ids,
)
from .modeling import encode, lm_head, masked_logits


@dataclass(frozen=True)
class BlockScores:
    """Per-block negative log-likelihood (exact) or its bound, nats summed over the block."""

    nats: torch.Tensor  # (M,) float64: nats over each block's scored tokens
    tokens: torch.Tensor  # (M,) float64: scored tokens per block

    @property
    def nats_per_token(self) -> float:
        return float(self.nats.sum() / self.tokens.sum())

    @property
    def perplexity(self) -> float:
        nats = self.nats_per_token
        return math.exp(nats) if nats < 700 else math.inf

    @property
    def standard_error(self) -> float:
        """Standard error (nats per token) of `nats_per_token` over blocks, as an estimate
        of the whole distribution's: data variation and Monte-Carlo noise together."""
        return _ratio_se(self.nats, self.tokens)


@dataclass(frozen=True)
class Difference:
    """a - b in nats per token on the same tokens, with its paired standard error."""

    nats_per_token: float
    standard_error: float

    @property
    def ratio(self) -> float:
        """exp(a - b): the ratio of the two perplexities (bound_ratio for bound vs AR)."""
        return math.exp(self.nats_per_token)


def paired_difference(a: BlockScores, b: BlockScores) -> Difference:
    """a - b per token with the standard error of the per-block differences: both scored on
    the same blocks (and, for two diffusion models, the same seed, so the same masks)."""
    if a.tokens.shape != b.tokens.shape or not torch.equal(a.tokens, b.tokens):
        raise ValueError("paired scores must cover the same blocks and tokens")
    diff = a.nats - b.nats  # (M,)
    return Difference(float(diff.sum() / a.tokens.sum()), _ratio_se(diff, a.tokens))


def _ratio_se(values: torch.Tensor, tokens: torch.Tensor) -> float:
    """Standard error of sum(values) / sum(tokens) over M blocks (the ratio estimator)."""
    keep = tokens > 0
    values, tokens = values[keep], tokens[keep]
    m = len(values)
    if m < 2:
        return math.nan
    residual = values - tokens * values.sum() / tokens.sum()  # (M,)
    return float((residual.square().sum() * m / (m - 1)).sqrt() / tokens.sum())


def masked_counts(n: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
    """(D, M) long: block m's masked-token count in each of `draws` passes, stratified over
    1..n[m] (0 where n[m] = 0). n: (M,) maskable tokens per block."""
    u = torch.rand(len(n), generator=generator, dtype=torch.float64)  # (M,)
    passes = torch.arange(draws, dtype=torch.float64)[:, None] / draws  # (D, 1)
    q = (u[None, :] + passes) % 1.0  # (D, M)
    return torch.minimum(torch.floor(q * n) + 1, n.to(torch.float64)).long()


def stratified_bound(
    model,
    blocks: torch.Tensor,
    tokenizer,
    *,
    draws: int = 8,
    batch_size: int = 32,
    seed: int = 0,
    prefix_length: int = 0,
) -> BlockScores:
    """The bound of every block of `blocks` (M, T), estimated with `draws` stratified passes.

    Never masked nor scored: special tokens, padding, the first `prefix_length` positions.
    Runs under `torch.inference_mode()` in eval mode (restored afterwards); an autocast
    context the caller opened applies.
    """
    if blocks.ndim != 2:
        raise ValueError(f"blocks must be (M, T) token ids, got shape {tuple(blocks.shape)}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    blocks = blocks.cpu()  # masks are drawn on the CPU so they match on every device
    device = next(model.parameters()).device
    maskable = maskable_positions(blocks, special_ids(tokenizer), prefix_length=prefix_length)
    n = maskable.sum(dim=1)  # (M,)
    counts = masked_counts(n, draws, seeded_generator(seed, 0))  # (D, M)
    mean_ce = torch.zeros(draws, len(blocks), dtype=torch.float64)  # (D, M)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for j in range(draws):
                ratios = counts[j] / n.clamp(min=1)  # exactly counts[j] of n masked
                masked = choose_masks(maskable, ratios, "grid", seeded_generator(seed, 1 + j))
                batch = assemble(blocks, masked, ratios, maskable, tokenizer.mask_token_id, "grid")
                for rows in torch.split(torch.arange(len(blocks)), batch_size):
                    where = masked[rows]  # (b, T)
                    logits = masked_logits(
                        model,
                        batch.input_ids[rows].to(device),
                        torch.ones_like(where, dtype=torch.long).to(device),
                        where.to(device),
                    ).float()  # (N, V)
                    ce = F.cross_entropy(logits, blocks[rows][where].to(device), reduction="none")
                    row = where.nonzero()[:, 0]  # (N,) the row of each masked token
                    sums = torch.zeros(len(rows), dtype=torch.float64)
                    sums.index_add_(0, row, ce.double().cpu())
                    mean_ce[j, rows] = sums / where.sum(dim=1).clamp(min=1)
    finally:
        model.train(was_training)
    tokens = n.to(torch.float64)
    return BlockScores(mean_ce.mean(dim=0) * tokens, tokens)


def causal_scores(
    model, blocks: torch.Tensor, tokenizer, *, batch_size: int = 32, prefix_length: int = 0
) -> BlockScores:
    """Exact NLL of every block of `blocks` (M, T) under causal LM `model`, on the tokens
    `stratified_bound` scores (`causal.scored_positions`), to pair with it."""
    blocks = blocks.cpu()
    device = next(model.parameters()).device
    special = special_ids(tokenizer)
    nats = torch.zeros(len(blocks), dtype=torch.float64)
    tokens = torch.zeros(len(blocks), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for rows in torch.split(torch.arange(len(blocks)), batch_size):
                ids = blocks[rows]  # (b, T)
                labels = next_token_labels(
                    ids, scored_positions(ids, special, prefix_length=prefix_length)
                )
                where = labels != IGNORE_INDEX  # (b, T)
                hidden = encode(model, ids.to(device), torch.ones_like(ids).to(device))
                logits = lm_head(model)(hidden[where.to(device)]).float()  # (N, V)
                ce = F.cross_entropy(logits, labels[where].to(device), reduction="none")
                nats[rows] = torch.zeros(len(rows), dtype=torch.float64).index_add_(
                    0, where.nonzero()[:, 0], ce.double().cpu()
                )
                tokens[rows] = where.sum(dim=1).to(torch.float64)
    finally:
        model.train(was_training)
    return BlockScores(nats, tokens)
