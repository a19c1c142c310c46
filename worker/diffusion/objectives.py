"""Training objectives: how a micro-batch of token blocks becomes model inputs and a loss.

An objective is an `nn.Module` around the model, so that the whole computation (inputs ->
logits -> loss) is one forward, which Accelerate's DDP and autocast then see. It has two
halves:

- `inputs(ids, generator)`: the global micro-batch of blocks (B, T) -> row-aligned tensors
  (every value (B, ...)), each random draw from `generator` only, so any process can build
  any micro-batch and keep its own rows, and a resumed run rebuilds the same batches;
  plus the batch's metrics (floats, averaged over the micro-batches of a step).
- `forward(**rows)`: some of those rows -> the loss (a scalar: their share of the batch's
  loss, the weights being normalised over the whole micro-batch).

`labels` is IGNORE_INDEX wherever nothing is scored, for every objective, which is how the
trainer counts the tokens a step scored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from shared.contracts.specs import MaskingSpec, TrainSpec

from .masking import IGNORE_INDEX, RatioDraw, diffusion_loss, mask_tokens
from .modeling import encode, lm_head


class Objective(nn.Module, ABC):
    """A training objective around `model`; see the module docstring for the contract."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @abstractmethod
    def inputs(
        self, ids: torch.Tensor, generator: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """(rows, metrics) of the micro-batch `ids` (B, T): rows' values are (B, ...) and
        hold a `labels` (B, T), IGNORE_INDEX where nothing is scored."""

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T)
        labels: torch.Tensor,  # (B, T)
        weights: torch.Tensor,  # (B, T)
    ) -> torch.Tensor:
        """Weighted cross-entropy at the scored positions (logits are computed nowhere
        else); the attention mask and the inputs carry what makes each objective its own."""
        scored = labels != IGNORE_INDEX  # (B, T)
        hidden = encode(self.model, input_ids, attention_mask)  # (B, T, H)
        logits = lm_head(self.model)(hidden[scored])  # (N, V)
        return diffusion_loss(logits, labels[scored], weights[scored])


class DiffusionObjective(Objective):
    """Masked diffusion: mask a drawn share of each block, cross-entropy at the masked
    positions only (logits are computed nowhere else).

    draw: how the ratios are drawn (`masking.RatioDraw`); complementary: the first B/2
    blocks of each micro-batch, each twice with complementary masks (B rows, so a step
    costs the same)."""

    def __init__(
        self,
        model: nn.Module,
        masking: MaskingSpec,
        special_ids: torch.Tensor,
        mask_token_id: int,
        draw: RatioDraw | None = None,
        complementary: bool = False,
    ) -> None:
        super().__init__(model)
        self.masking = masking
        self.special_ids = special_ids  # (S,) never masked; a plain attribute, not state
        self.mask_token_id = mask_token_id
        self.draw = draw or RatioDraw()
        self.complementary = complementary

    def inputs(self, ids, generator):
        if self.complementary:
            ids = ids[: len(ids) // 2]  # (B/2, T): each becomes two rows
        batch = mask_tokens(
            ids,
            self.masking,
            special_ids=self.special_ids,
            mask_token_id=self.mask_token_id,
            generator=generator,
            draw=self.draw,
            complementary=self.complementary,
        )
        rows = {
            "input_ids": batch.input_ids,  # (B, T) with masks applied
            "attention_mask": torch.ones_like(batch.input_ids),  # (B, T) packed: no padding
            "labels": batch.labels,  # (B, T) original ids where masked
            "weights": batch.weights,  # (B, T) loss weights, 0 where not masked
        }
        return rows, {"mask_ratio": float(batch.ratios.mean())}


def objective_for(
    spec: TrainSpec, model: nn.Module, special_ids: torch.Tensor, mask_token_id: int
) -> Objective:
    """The objective `spec` trains: AR (`causal.CausalObjective`) or masked diffusion with
    the spec's recipe."""
    if spec.objective == "ar":
        from .causal import CausalObjective  # causal imports this module

        return CausalObjective(model, special_ids, spec.masking.prefix_length)
    return DiffusionObjective(
        model,
        spec.masking,
        special_ids,
        mask_token_id,
        draw=RatioDraw.of(spec),
        complementary=spec.complementary_masks,
    )
