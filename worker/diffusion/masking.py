"""Variable-ratio masking: what makes a masked LM a diffusion model.

A standard MLM always masks 15% and so only learns to fill small gaps. Training over
ratios from 10% to 100% teaches the whole denoising curve, down to generating from a
fully masked sequence.

Two modes (see `shared.contracts.specs.MaskingSpec`):

- grid: one ratio per batch drawn from a grid such as {0.1, ..., 1.0}; exactly
  round(r * n) of a row's n maskable tokens are masked; the loss is the mean
  cross-entropy over masked tokens (the seed project's collator, see `worker.diffusion`).
- uniform: a ratio t per sequence from U(eps, 1], spread evenly over the batch
  (low-discrepancy); each maskable token is masked with probability t; the loss on a
  masked token is weighted 1/t and each row is normalised by its length, an unbiased
  estimate of the ELBO (MDLM, LLaDA).

Never masked: special tokens (padding among them), the first `prefix_length` positions of
a block and the first `prompt_lengths[i]` positions of row i. Labels are -100 wherever
nothing was masked, as Hugging Face losses expect.

`mask_tokens` is the one pipeline (maskable positions -> ratios -> masks) that training,
evaluation and the pictures in `viz` all call; the pieces below it are public for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F

from shared.contracts.options import MaskMode
from shared.contracts.specs import MaskingSpec

IGNORE_INDEX = -100


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
) -> MaskedBatch:
    """Mask `input_ids` (B, T) as `spec` says: training, evaluation and `viz` all call this.

    special_ids: (S,) never masked; ratios: (B,) fixed mask ratios (evaluation, pictures),
    drawn by `sample_ratios` from `generator` when None; prompt_lengths: (B,) leading
    positions of each row kept visible. Every draw comes from `generator`, in a fixed order
    (ratios, then masks), so a seeded generator gives the same batch every time.
    """
    maskable = maskable_positions(
        input_ids, special_ids, prefix_length=spec.prefix_length, prompt_lengths=prompt_lengths
    )
    if ratios is None:
        ratios = sample_ratios(len(input_ids), spec, generator)
    return mask_batch(
        input_ids,
        maskable,
        ratios,
        mask_token_id=mask_token_id,
        mode=spec.mode,
        generator=generator,
    )


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
    batch_size: int, spec: MaskingSpec, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B,) float64 mask ratios: one grid value for the batch, or stratified U(eps, 1]."""
    if spec.mode == "grid":
        grid = torch.tensor(spec.grid, dtype=torch.float64)
        index = torch.randint(len(grid), (1,), generator=generator)
        return grid[index].expand(batch_size).clone()
    # Stratified: one uniform offset, then evenly spaced, so a batch covers (eps, 1].
    offset = torch.rand(1, generator=generator, dtype=torch.float64)
    u = (offset + torch.arange(batch_size, dtype=torch.float64) / batch_size) % 1.0
    return 1.0 - (1.0 - spec.eps) * u  # in (eps, 1]


def mask_batch(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    ratios: torch.Tensor,
    *,
    mask_token_id: int,
    mode: str,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Mask rows of `input_ids` (B, T) at `ratios` (B,) among `maskable` (B, T) positions.

    mode "grid" masks exactly round(r * n) maskable tokens per row (at least one when
    n > 0); mode "uniform" masks each independently with probability t.
    """
    B, T = input_ids.shape
    noise = torch.rand((B, T), generator=generator, dtype=torch.float64)
    n_maskable = maskable.sum(dim=1)  # (B,)
    r = ratios.to(torch.float64)[:, None]  # (B, 1)
    if mode == "grid":
        counts = torch.clamp(torch.round(r[:, 0] * n_maskable), min=1)
        counts = torch.minimum(counts, n_maskable).long()  # (B,)
        # The k maskable positions with the smallest noise: a uniform random subset.
        noise = noise.masked_fill(~maskable, 2.0)
        rank = noise.argsort(dim=1).argsort(dim=1)  # (B, T)
        masked = rank < counts[:, None]
        total = masked.sum().clamp(min=1)
        weights = masked.to(torch.float32) / total
    elif mode == "uniform":
        masked = (noise < r) & maskable
        lengths = n_maskable.clamp(min=1).to(torch.float64)[:, None]  # (B, 1)
        weights = (masked / (r * lengths * B)).to(torch.float32)
    else:
        raise ValueError(
            f"unknown masking mode {mode!r}; choose one of {', '.join(get_args(MaskMode))}"
        )
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    noisy = torch.where(masked, torch.full_like(input_ids, mask_token_id), input_ids)
    return MaskedBatch(noisy, labels, r[:, 0], weights, maskable)


def diffusion_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted cross-entropy over masked tokens.

    logits: (N, V) at masked positions; targets: (N,); weights: (N,), from `MaskedBatch`.
    Grid mode gives the mean CE; uniform mode the ELBO estimate per token.
    """
    ce = F.cross_entropy(logits.float(), targets, reduction="none")  # (N,)
    return (ce * weights).sum()
