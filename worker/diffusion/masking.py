"""Variable-ratio masking: what makes a masked LM a diffusion model.

A standard MLM always masks 15% and so only learns to fill small gaps. Training over
ratios from 10% to 100% teaches the whole denoising curve, down to generating from a
fully masked sequence.

Two modes (see `shared.contracts.specs.MaskingSpec`):

- grid: one ratio per batch drawn from a grid such as {0.1, ..., 1.0}; exactly
  round(r * n) of a row's n maskable tokens are masked; the loss is the mean
  cross-entropy over masked tokens (the seed project's collator, see `worker.diffusion`).
- uniform: a ratio t per sequence from U(eps, 1]; each maskable token is masked with
  probability t; the loss on a masked token is weighted 1/t and each row is normalised by
  its length, an unbiased estimate of the ELBO (MDLM, LLaDA).

How training draws the ratios is the recipe's `RatioDraw` (TrainSpec's `stratified_t`,
`t_distribution`, `t_low`, `t_high`): a quantile u in [0, 1) per row (one for the whole batch
in unstratified grid mode), independent or stratified (MDLM's `_sample_t`: row i at
(u + i/B) mod 1), mapped through the training distribution's inverse CDF. A non-uniform
distribution changes which ratios the model practises, not the weights: the loss is not
importance-weighted, and the bound is always evaluated separately over the whole range
(`evaluation`, `likelihood`), so it does not depend on the training distribution.
`complementary=True` masks each row twice, the second time exactly the maskable tokens the
first left visible (LaViDa), so every maskable token gets a loss once per pair.

Never masked: special tokens (padding among them), the first `prefix_length` positions of
a block and the first `prompt_lengths[i]` positions of row i. Labels are -100 wherever
nothing was masked, as Hugging Face losses expect.

`mask_tokens` is the one pipeline (maskable positions -> ratios -> masks) that training,
evaluation and the pictures in `viz` all call; the pieces below it are public for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F

from shared.contracts.options import MaskMode, TDistribution
from shared.contracts.specs import MaskingSpec, TrainSpec

IGNORE_INDEX = -100
# The bell: a normal around the middle ratio whose +-2 sd span [0.1, 0.9].
BELL_MEAN, BELL_STD = 0.5, 0.2


@dataclass(frozen=True)
class RatioDraw:
    """How training draws a batch's mask ratios; evaluation fixes its ratios instead."""

    stratified: bool = False  # rows at evenly spaced quantiles (antithetic), not independent
    distribution: TDistribution = "uniform"
    low: float = 0.3  # the clipped distribution's range
    high: float = 0.8

    @classmethod
    def of(cls, spec: TrainSpec) -> RatioDraw:
        return cls(spec.stratified_t, spec.t_distribution, spec.t_low, spec.t_high)


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor  # (B, T) with masked positions set to the mask token
    labels: torch.Tensor  # (B, T) original ids where masked, IGNORE_INDEX elsewhere
    ratios: torch.Tensor  # (B,) float64: the mask ratio each row was drawn at
    weights: torch.Tensor  # (B, T) loss weight of each masked position (0 elsewhere)
    maskable: torch.Tensor  # (B, T) bool: positions that could have been masked

    @property
    def masked(self) -> torch.Tensor:
        """(B, T) bool: True where a token was masked."""
        return self.labels != IGNORE_INDEX


def special_ids(tokenizer) -> torch.Tensor:
    """(S,) long: the tokenizer's special ids (padding included), never masked, scored nor
    sampled."""
    return torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)


def seeded_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of draw `index` (a training micro-batch, an evaluation ratio) of a
    run seeded `seed`: the same masks on every call, process and device. A large odd
    multiplier keeps (seed, index) pairs apart for any realistic number of draws."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def mask_tokens(
    input_ids: torch.Tensor,
    spec: MaskingSpec,
    *,
    special_ids: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator | None = None,
    ratios: torch.Tensor | None = None,
    prompt_lengths: torch.Tensor | None = None,
    draw: RatioDraw | None = None,
    complementary: bool = False,
) -> MaskedBatch:
    """Mask `input_ids` (B, T) as `spec` says: training, evaluation and `viz` all call this.

    special_ids: (S,) never masked; ratios: (B,) fixed mask ratios (evaluation, pictures),
    drawn by `sample_ratios` with `draw` (default `RatioDraw()`) from `generator` when None;
    prompt_lengths: (B,) leading positions of each row kept visible. Every draw comes from
    `generator`, in a fixed order (ratios, then masks), so a seeded generator gives the same
    batch every time. complementary: return (2B, T), rows B + i masking exactly the
    maskable tokens row i left visible, at ratio 1 - t (weighted 1 / max(1 - t, eps)).
    """
    maskable = maskable_positions(
        input_ids, special_ids, prefix_length=spec.prefix_length, prompt_lengths=prompt_lengths
    )
    if ratios is None:
        ratios = sample_ratios(len(input_ids), spec, generator, draw)
    masked = choose_masks(maskable, ratios, spec.mode, generator)  # (B, T)
    if complementary:
        input_ids, maskable = input_ids.repeat(2, 1), maskable.repeat(2, 1)  # (2B, T)
        masked = torch.cat([masked, maskable[: len(masked)] & ~masked])
        ratios = torch.cat([ratios, 1.0 - ratios]).clamp(min=spec.eps)
    return assemble(input_ids, masked, ratios, maskable, mask_token_id, spec.mode)


def maskable_positions(
    input_ids: torch.Tensor,
    special_ids: torch.Tensor,
    *,
    prefix_length: int = 0,
    prompt_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T) bool: positions that may be masked.

    special_ids: (S,) ids that are never masked (CLS/SEP/PAD/...). prompt_lengths: (B,).
    """
    maskable = ~torch.isin(input_ids, special_ids)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
    if prefix_length:
        maskable &= positions >= prefix_length
    if prompt_lengths is not None:
        maskable &= positions[None, :] >= prompt_lengths[:, None]
    return maskable


def sample_ratios(
    batch_size: int,
    spec: MaskingSpec,
    generator: torch.Generator | None = None,
    draw: RatioDraw | None = None,
) -> torch.Tensor:
    """(B,) float64 mask ratios drawn as `draw` says: grid values (one for the whole batch
    unless stratified), or values in (eps, 1] from the training distribution."""
    draw = draw or RatioDraw()
    if spec.mode == "grid" and not draw.stratified:
        u = torch.rand(1, generator=generator, dtype=torch.float64).repeat(batch_size)
    elif draw.stratified:  # one offset, then evenly spaced: the batch covers [0, 1)
        offset = torch.rand(1, generator=generator, dtype=torch.float64)
        u = (offset + torch.arange(batch_size, dtype=torch.float64) / batch_size) % 1.0
    else:
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    if spec.mode == "grid":
        grid = torch.tensor(spec.grid, dtype=torch.float64)  # (G,) sorted
        cdf = torch.cumsum(ratio_density(grid, draw), 0)  # (G,)
        index = torch.searchsorted(cdf / cdf[-1], u, right=True).clamp(max=len(grid) - 1)
        return grid[index].clone()
    return ratio_quantile(u, draw, spec.eps)


def ratio_density(t: torch.Tensor, draw: RatioDraw) -> torch.Tensor:
    """The training distribution's density at ratios `t`, up to a constant: how often grid
    mode trains each grid ratio."""
    if draw.distribution == "uniform":
        return torch.ones_like(t)
    if draw.distribution == "clipped":
        return ((t >= draw.low) & (t <= draw.high)).to(t.dtype)
    return torch.exp(-0.5 * ((t - BELL_MEAN) / BELL_STD) ** 2)  # bell


def ratio_quantile(u: torch.Tensor, draw: RatioDraw, eps: float) -> torch.Tensor:
    """Ratios at quantiles `u` in [0, 1) of the training distribution, all in (eps, 1]."""
    if draw.distribution == "uniform":
        return 1.0 - (1.0 - eps) * u
    if draw.distribution == "clipped":
        return draw.high - (draw.high - draw.low) * u
    # bell: the normal's inverse CDF between the CDF values of eps and 1.
    lo, hi = (0.5 * (1 + math.erf((x - BELL_MEAN) / (BELL_STD * math.sqrt(2)))) for x in (eps, 1))
    t = BELL_MEAN + BELL_STD * torch.special.ndtri(lo + (hi - lo) * u)
    return t.clamp(min=eps, max=1.0)


def choose_masks(
    maskable: torch.Tensor,
    ratios: torch.Tensor,
    mode: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, T) bool: which of the `maskable` (B, T) positions to mask at `ratios` (B,).

    mode "grid" masks exactly round(r * n) maskable tokens per row (at least one when
    n > 0); mode "uniform" masks each independently with probability t.
    """
    noise = torch.rand(maskable.shape, generator=generator, dtype=torch.float64)  # (B, T)
    n_maskable = maskable.sum(dim=1)  # (B,)
    r = ratios.to(torch.float64)  # (B,)
    if mode == "grid":
        counts = torch.clamp(torch.round(r * n_maskable), min=1)
        counts = torch.minimum(counts, n_maskable).long()  # (B,)
        # The k maskable positions with the smallest noise: a uniform random subset.
        noise = noise.masked_fill(~maskable, 2.0)
        rank = noise.argsort(dim=1).argsort(dim=1)  # (B, T)
        return rank < counts[:, None]
    if mode == "uniform":
        return (noise < r[:, None]) & maskable
    raise ValueError(
        f"unknown masking mode {mode!r}; choose one of {', '.join(get_args(MaskMode))}"
    )


def assemble(
    input_ids: torch.Tensor,
    masked: torch.Tensor,
    ratios: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    mode: str,
) -> MaskedBatch:
    """The batch of `input_ids` (B, T) with `masked` (B, T) positions masked at `ratios` (B,)
    and its loss weights: grid mode, the mean over all masked tokens of the batch; uniform
    mode, 1 / (t * n * B) per masked token of a row with n maskable tokens."""
    B = len(input_ids)
    r = ratios.to(torch.float64)[:, None]  # (B, 1)
    if mode == "grid":
        weights = masked.to(torch.float32) / masked.sum().clamp(min=1)
    else:
        lengths = maskable.sum(dim=1).clamp(min=1).to(torch.float64)[:, None]  # (B, 1)
        weights = (masked / (r * lengths * B)).to(torch.float32)
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    noisy = torch.where(masked, torch.full_like(input_ids, mask_token_id), input_ids)
    return MaskedBatch(noisy, labels, r[:, 0], weights, maskable)


def mask_batch(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    ratios: torch.Tensor,
    *,
    mask_token_id: int,
    mode: str,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Mask rows of `input_ids` (B, T) at `ratios` (B,) among `maskable` (B, T) positions
    (`choose_masks`, then `assemble`)."""
    masked = choose_masks(maskable, ratios, mode, generator)
    return assemble(input_ids, masked, ratios, maskable, mask_token_id, mode)


def diffusion_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted cross-entropy over masked tokens.

    logits: (N, V) at masked positions; targets: (N,); weights: (N,), from `MaskedBatch`.
    Grid mode gives the mean CE; uniform mode the ELBO estimate per token.
    """
    ce = F.cross_entropy(logits.float(), targets, reduction="none")  # (N,)
    return (ce * weights).sum()
