"""Masking invariants: what may never be masked, the ratio distributions, labels and weights."""

from __future__ import annotations

import pytest
import torch

from shared.contracts.specs import MaskingSpec
from worker.diffusion.masking import (
    IGNORE_INDEX,
    DiffusionCollator,
    VisualizableDiffusionCollator,
    diffusion_loss,
    mask_batch,
    maskable_positions,
    sample_ratios,
)

MASK = 4
SPECIALS = torch.tensor([0, 1, 2, 3, 4])  # cls, pad, sep, unk, mask


def _batch(B: int = 8, T: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 400, (B, T), generator=g)
    ids[:, 0] = 0
    ids[:, -1] = 2
    ids[0, 20:] = 1  # a padded row
    return ids


@pytest.mark.parametrize("mode", ["grid", "uniform"])
def test_specials_padding_prefix_and_prompts_never_masked(mode):
    ids = _batch()
    prompts = torch.tensor([0, 3, 5, 7, 9, 11, 13, 15])
    maskable = maskable_positions(ids, SPECIALS, prefix_length=4, prompt_lengths=prompts)
    spec = MaskingSpec(mode=mode)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        ratios = torch.ones(8, dtype=torch.float64)  # the hardest case: mask everything allowed
        out = mask_batch(ids, maskable, ratios, mask_token_id=MASK, mode=spec.mode, generator=g)
        masked = out.masked
        assert not masked[torch.isin(ids, SPECIALS)].any()
        assert not masked[:, :4].any()
        for i, p in enumerate(prompts.tolist()):
            assert not masked[i, :p].any()
        # Everything maskable is masked at ratio 1.0, and nothing else changed.
        assert torch.equal(masked, maskable)
        assert torch.equal(out.input_ids[~masked], ids[~masked])
        assert (out.input_ids[masked] == MASK).all()


def test_labels_are_originals_where_masked_and_ignore_elsewhere():
    ids = _batch()
    maskable = maskable_positions(ids, SPECIALS)
    ratios = torch.full((8,), 0.5, dtype=torch.float64)
    out = mask_batch(ids, maskable, ratios, mask_token_id=MASK, mode="grid")
    assert torch.equal(out.labels[out.masked], ids[out.masked])
    assert (out.labels[~out.masked] == IGNORE_INDEX).all()


def test_grid_masks_exact_counts_and_weights_average():
    ids = _batch()
    maskable = maskable_positions(ids, SPECIALS)
    for r in (0.1, 0.3, 0.5, 1.0):
        ratios = torch.full((8,), r, dtype=torch.float64)
        out = mask_batch(ids, maskable, ratios, mask_token_id=MASK, mode="grid")
        n = maskable.sum(1).double()
        expected = torch.clamp(torch.round(r * n), min=1)
        assert torch.equal(out.masked.sum(1).double(), expected)
        # Grid weights make the loss the plain mean CE over masked tokens.
        assert out.weights.sum().item() == pytest.approx(1.0, rel=1e-5)


def test_grid_ratio_is_one_grid_value_per_batch_and_covers_the_grid():
    spec = MaskingSpec(mode="grid", grid=[0.1, 0.5, 1.0])
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(100):
        r = sample_ratios(16, spec, g)
        assert len(set(r.tolist())) == 1
        seen.add(round(r[0].item(), 6))
    assert seen == {0.1, 0.5, 1.0}


def test_uniform_ratios_are_stratified_in_eps_one():
    spec = MaskingSpec(mode="uniform", eps=0.01)
    g = torch.Generator().manual_seed(0)
    r = sample_ratios(10, spec, g)
    assert ((r > 0.01) & (r <= 1.0)).all()
    # Low-discrepancy: exactly one ratio in each tenth of (eps, 1].
    cells = torch.floor((1.0 - r) / ((1.0 - 0.01) / 10)).long().clamp(max=9)
    assert sorted(cells.tolist()) == list(range(10))


def test_uniform_masking_frequency_follows_the_ratio_and_weights_are_elbo():
    torch.manual_seed(0)
    ids = torch.randint(10, 400, (64, 128))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    ratios = torch.linspace(0.1, 1.0, 64, dtype=torch.float64)
    out = mask_batch(ids, maskable, ratios, mask_token_id=MASK, mode="uniform")
    freq = out.masked.double().mean(1)
    # Bernoulli(t) per token: each row within 4.5 sigma (0.2), and the batch mean close.
    assert torch.allclose(freq, ratios, atol=0.2)
    assert freq.mean().item() == pytest.approx(ratios.mean().item(), abs=0.02)
    # Weight of a masked token: 1 / (t * L * B).
    i, j = torch.nonzero(out.masked)[0].tolist()
    assert out.weights[i, j].item() == pytest.approx(1 / (ratios[i].item() * 128 * 64), rel=1e-4)


def test_uniform_loss_is_unbiased_for_the_per_token_ce():
    """With a constant CE c at every token, E[loss] = c (the 1/t weights undo the masking)."""
    torch.manual_seed(0)
    V, B, T = 8, 256, 64
    ids = torch.randint(0, V, (B, T))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    spec = MaskingSpec(mode="uniform")
    losses = []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        out = mask_batch(
            ids, maskable, sample_ratios(B, spec, g), mask_token_id=V, mode="uniform", generator=g
        )
        logits = torch.zeros(int(out.masked.sum()), V)  # uniform prediction: CE = ln V
        losses.append(diffusion_loss(logits, ids[out.masked], out.weights[out.masked]).item())
    assert sum(losses) / len(losses) == pytest.approx(torch.log(torch.tensor(V)).item(), rel=0.03)


def test_collator_pads_and_reports(tiny_model):
    _, tokenizer = tiny_model
    spec = MaskingSpec(mode="grid", grid=[0.5], prefix_length=2)
    collator = VisualizableDiffusionCollator(tokenizer, spec, seed=0)
    examples = [
        {"input_ids": tokenizer("The king walked to the city gate.")["input_ids"]},
        {"input_ids": tokenizer("A girl.")["input_ids"], "prompt_length": 3},
    ]
    batch = collator(examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    pad_positions = batch["attention_mask"] == 0
    assert (batch["labels"][pad_positions] == IGNORE_INDEX).all()
    assert (batch["labels"][:, :2] == IGNORE_INDEX).all()
    assert (batch["labels"][1, :3] == IGNORE_INDEX).all()
    text = collator.render(batch)
    assert tokenizer.mask_token in text and "50% target" in text


def test_collator_is_seeded(tiny_model):
    _, tokenizer = tiny_model
    ex = [{"input_ids": tokenizer("The old farmer looked at a green field.")["input_ids"]}] * 4
    a = DiffusionCollator(tokenizer, MaskingSpec(), seed=3)(ex)
    b = DiffusionCollator(tokenizer, MaskingSpec(), seed=3)(ex)
    assert torch.equal(a["input_ids"], b["input_ids"])
