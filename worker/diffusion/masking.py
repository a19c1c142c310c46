"""Variable-ratio masking: what makes a masked LM a diffusion model.

A standard MLM always masks 15% and so only learns to fill small gaps. Training over
ratios from 10% to 100% teaches the whole denoising curve, down to generating from a
fully masked sequence.

Two modes (see `shared.contracts.specs.MaskingSpec`):

- grid: one ratio per batch drawn from a grid such as {0.1, ..., 1.0}; exactly
  round(r * n) of a row's n maskable tokens are masked; the loss is the mean
  cross-entropy over masked tokens (the original design).
- uniform: a ratio t per sequence from U(eps, 1], spread evenly over the batch
  (low-discrepancy); each maskable token is masked with probability t; the loss on a
  masked token is weighted 1/t and each row is normalised by its length, an unbiased
  estimate of the ELBO (MDLM, LLaDA).

Never masked: special tokens, padding, the first `prefix_length` positions of a block
and the first `prompt_lengths[i]` positions of row i. Labels are -100 wherever nothing
was masked, as Hugging Face losses expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F

from shared.contracts.specs import MaskingSpec, MaskMode

IGNORE_INDEX = -100


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor  # (B, T) with masked positions set to the mask token
    labels: torch.Tensor  # (B, T) original ids where masked, IGNORE_INDEX elsewhere
    ratios: torch.Tensor  # (B,) the mask ratio each row was drawn at
    weights: torch.Tensor  # (B, T) loss weight of each masked position (0 elsewhere)

    @property
    def masked(self) -> torch.Tensor:
        """(B, T) bool: True where a token was masked."""
        return self.labels != IGNORE_INDEX


def special_ids(tokenizer) -> torch.Tensor:
    """(S,) long: the tokenizer's special ids, never masked, scored nor sampled."""
    return torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)


def maskable_positions(
    input_ids: torch.Tensor,
    special_ids: torch.Tensor,
    *,
    prefix_length: int = 0,
    prompt_lengths: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T) bool: positions that may be masked.

    special_ids: (S,) ids that are never masked (CLS/SEP/PAD/...). prompt_lengths: (B,).
    """
    maskable = ~torch.isin(input_ids, special_ids)
    if attention_mask is not None:
        maskable &= attention_mask.bool()
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
    return MaskedBatch(noisy, labels, ratios.to(torch.float32), weights)


def diffusion_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted cross-entropy over masked tokens.

    logits: (N, V) at masked positions; targets: (N,); weights: (N,), from `MaskedBatch`.
    Grid mode gives the mean CE; uniform mode the ELBO estimate per token.
    """
    ce = F.cross_entropy(logits.float(), targets, reduction="none")  # (N,)
    return (ce * weights).sum()


class DiffusionCollator:
    """Pads examples and masks them: a drop-in `collate_fn` for a DataLoader.

    Examples are dicts with `input_ids` and optionally `prompt_length` (positions kept
    visible, for prompt/response data without left padding).
    """

    def __init__(self, tokenizer, spec: MaskingSpec, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self.generator = torch.Generator().manual_seed(seed)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(examples), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for i, e in enumerate(examples):
            row = torch.as_tensor(e["input_ids"], dtype=torch.long)
            ids[i, : len(row)] = row
            attention[i, : len(row)] = 1
        prompts = None
        if any("prompt_length" in e for e in examples):
            prompts = torch.tensor([int(e.get("prompt_length", 0)) for e in examples])
        maskable = maskable_positions(
            ids,
            self.special_ids,
            prefix_length=self.spec.prefix_length,
            prompt_lengths=prompts,
            attention_mask=attention,
        )
        ratios = sample_ratios(len(examples), self.spec, self.generator)
        batch = mask_batch(
            ids,
            maskable,
            ratios,
            mask_token_id=self.tokenizer.mask_token_id,
            mode=self.spec.mode,
            generator=self.generator,
        )
        return {
            "input_ids": batch.input_ids,
            "attention_mask": attention,
            "labels": batch.labels,
            "mask_ratio": batch.ratios,
            "loss_weight": batch.weights,
        }


class VisualizableDiffusionCollator(DiffusionCollator):
    """A collator that can also show humans what it did to a batch."""

    def render(self, batch: dict[str, torch.Tensor], max_rows: int = 4) -> str:
        """One line per row: visible tokens as text, masked ones as the mask token."""
        lines = []
        for i in range(min(max_rows, batch["input_ids"].shape[0])):
            ids = batch["input_ids"][i][batch["attention_mask"][i].bool()]
            ratio = float(batch["mask_ratio"][i])
            masked = int((batch["labels"][i] != IGNORE_INDEX).sum())
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            lines.append(f"[{ratio:4.0%} target, {masked} masked] {text}")
        return "\n".join(lines)
