"""Masking invariants: what may never be masked, the ratio distributions, labels and weights."""

from __future__ import annotations

import pytest
import torch

from shared.contracts.specs import MaskingSpec
from worker.diffusion.masking import (
    IGNORE_INDEX,
    RatioDraw,
    diffusion_loss,
    mask_batch,
    mask_tokens,
    maskable_positions,
    sample_ratios,
    seeded_generator,
    special_ids,
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
    spec = MaskingSpec(mode=mode, prefix_length=4)
    for seed in range(20):
        out = mask_tokens(
            ids,
            spec,
            special_ids=SPECIALS,
            mask_token_id=MASK,
            generator=torch.Generator().manual_seed(seed),
            ratios=torch.ones(8, dtype=torch.float64),  # the hardest case: mask all allowed
            prompt_lengths=prompts,
        )
        masked = out.masked
        assert torch.equal(out.maskable, maskable)
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
    r = sample_ratios(10, spec, g, RatioDraw(stratified=True))  # stratified_t
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


def _ce_of_ratio(
    t: torch.Tensor, position: torch.Tensor, V: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, V) whose cross-entropy on target 0 rises with the mask ratio t (N,), as a
    real model's does (less context), and differs from position to position (N,); and that
    cross-entropy (N,) in closed form."""
    z = 8.0 * (1.0 - t) - 4.0 + 0.5 * (position % 3)  # (N,) logit of the target
    logits = torch.zeros(len(t), V, dtype=torch.float64)
    logits[:, 0] = z
    return logits, torch.log(torch.exp(z) + (V - 1)) - z


def test_uniform_loss_is_unbiased_for_the_elbo():
    """E[loss] = integral over t of the mean per-token CE(t): the 1/(t L B) weights undo both
    the masking probability and the larger share of tokens that high-t rows mask. A plain
    mean over the masked tokens (the grid-mode weights) is biased towards high t here."""
    V, B, T = 8, 256, 64
    ids = torch.zeros((B, T), dtype=torch.long)  # every target is token 0
    spec = MaskingSpec(mode="uniform")
    position = torch.arange(T).expand(B, T)
    elbo, plain = [], []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        out = mask_tokens(ids, spec, special_ids=torch.tensor([V]), mask_token_id=V, generator=g)
        where = out.masked
        t = out.ratios[:, None].expand(B, T)[where]  # (N,) each masked token's row ratio
        logits, _ = _ce_of_ratio(t, position[where], V)
        elbo.append(diffusion_loss(logits, ids[where], out.weights[where]).item())
        mean_weights = torch.full_like(t, 1.0 / len(t))
        plain.append(diffusion_loss(logits, ids[where], mean_weights).item())
    # The target: t ~ U(eps, 1], every position masked with probability t.
    grid = spec.eps + (1.0 - spec.eps) * (torch.arange(20_000, dtype=torch.float64) + 0.5) / 20_000
    _, ce = _ce_of_ratio(grid[:, None].expand(-1, T).reshape(-1), position[0].repeat(20_000), V)
    target = ce.mean().item()
    assert sum(elbo) / len(elbo) == pytest.approx(target, rel=0.02)
    assert sum(plain) / len(plain) > target * 1.2  # the test can tell a biased estimator


def test_mask_tokens_on_padded_rows_keeps_pads_prefix_and_prompts(tiny_model):
    _, tokenizer = tiny_model
    texts = ["The king walked to the city gate.", "A girl."]
    rows = [tokenizer(text)["input_ids"] for text in texts]
    ids = torch.full((2, max(map(len, rows))), tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    spec = MaskingSpec(mode="grid", grid=[1.0], prefix_length=2)
    batch = mask_tokens(
        ids,
        spec,
        special_ids=special_ids(tokenizer),
        mask_token_id=tokenizer.mask_token_id,
        generator=seeded_generator(0, 0),
        prompt_lengths=torch.tensor([0, 3]),
    )
    pads = ids == tokenizer.pad_token_id
    assert pads.any() and (batch.labels[pads] == IGNORE_INDEX).all()
    assert (batch.labels[:, :2] == IGNORE_INDEX).all()
    assert (batch.labels[1, :3] == IGNORE_INDEX).all()
    # Ratio 1.0 masks all the rest: the words of row 0 after the prefix, of row 1 after its prompt.
    assert int(batch.masked[0].sum()) == len(rows[0]) - 3  # prefix of 2 and the end token
    assert int(batch.masked[1].sum()) == len(rows[1]) - 4
    assert batch.ratios.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("mode", ["grid", "uniform"])
def test_mask_tokens_is_seeded(mode):
    ids = _batch()
    spec = MaskingSpec(mode=mode)

    def masked_with(seed: int, index: int):
        return mask_tokens(
            ids,
            spec,
            special_ids=SPECIALS,
            mask_token_id=MASK,
            generator=seeded_generator(seed, index),
        )

    a, b, other = masked_with(3, 7), masked_with(3, 7), masked_with(3, 8)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.ratios, b.ratios)
    assert not torch.equal(a.input_ids, other.input_ids)
