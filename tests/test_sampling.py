"""Token samplers: exact filter sets, greedy, seeded reproducibility."""

from __future__ import annotations

import pytest
import torch

from worker.diffusion.sampling import draw_uniforms, fast_topk, sample_tokens

# Oracles: the allowed sets by their definitions, written the slow obvious way, for the
# fast samplers to be checked against.


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (N, V) with everything but the k largest of each row set to -inf (exactly k kept)."""
    k = min(max(int(k), 1), logits.shape[-1])
    _, index = logits.topk(k, dim=-1)  # (N, k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, index, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits (N, V) with everything outside each row's nucleus set to -inf.

    The nucleus is the smallest set of most likely tokens whose probability (softmax in
    float64) is >= p; it always holds at least the most likely token. p >= 1 keeps all.
    """
    if p >= 1.0:
        return logits.clone()
    probs = torch.softmax(logits.double(), dim=-1)  # (N, V)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (N, V)
    keep_sorted = mass_before < p  # the first token always has mass_before 0 < p
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.tolist() == [
        [False, True, False, True, False],
        [True, True, False, False, False],
    ]
    assert torch.isfinite(top_k_filter(logits, 99)).all()


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.9, 0.03, 0.02]], dtype=torch.float64)
    logits = probs.log()
    assert torch.isfinite(top_p_filter(logits, 0.79)).tolist() == [
        [True, True, False, False],  # 0.5 + 0.3 >= 0.79
        [False, True, False, False],  # 0.9 alone
    ]
    assert torch.isfinite(top_p_filter(logits, 0.45)).tolist()[0] == [True, False, False, False]
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist()[0] == [True, True, True, False]
    # At least the most likely token, even for a tiny p; everything for p = 1.
    assert torch.isfinite(top_p_filter(logits, 1e-6)).sum(dim=1).tolist() == [1, 1]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()


def test_greedy_is_argmax_and_ignores_temperature():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    for t in (0.1, 1.0, 5.0):
        tokens, probs = sample_tokens(logits, "greedy", temperature=t, generators=_gens(6))
        assert torch.equal(tokens, logits.argmax(dim=1))
    expected = torch.softmax(logits.double(), dim=1).max(dim=1).values
    assert torch.allclose(probs, expected)


@pytest.mark.parametrize("method", ["topk", "nucleus"])
def test_samples_stay_inside_the_filtered_set(method):
    logits = torch.randn(200, 300, generator=torch.Generator().manual_seed(1)) * 3
    tokens, probs = sample_tokens(
        logits, method, temperature=0.8, top_k=5, top_p=0.6, generators=_gens(200)
    )
    scaled = logits / 0.8
    allowed = top_k_filter(scaled, 5) if method == "topk" else top_p_filter(scaled, 0.6)
    assert torch.isfinite(allowed.gather(1, tokens[:, None])).all()
    expected = torch.softmax(logits.double(), dim=1).gather(1, tokens[:, None]).squeeze(1)
    assert torch.allclose(probs, expected)


def test_nucleus_slow_path_on_flat_distributions():
    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(2)) * 0.01
    tokens, _ = sample_tokens(logits, "nucleus", top_p=0.95, generators=_gens(4))
    allowed = top_p_filter(logits, 0.95)
    assert torch.isfinite(allowed.gather(1, tokens[:, None])).all()


@pytest.mark.parametrize("method", ["topk", "nucleus"])
def test_same_seed_reproduces_and_different_seeds_differ(method):
    logits = torch.zeros(64, 100)  # uniform: every draw is pure seed
    a, _ = sample_tokens(logits, method, top_k=100, top_p=1.0, generators=_gens(64, 0))
    b, _ = sample_tokens(logits, method, top_k=100, top_p=1.0, generators=_gens(64, 0))
    c, _ = sample_tokens(logits, method, top_k=100, top_p=1.0, generators=_gens(64, 1000))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sampling_frequencies_follow_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    logits = probs.log().float().expand(20000, 3)
    gen = [torch.Generator().manual_seed(0)]
    tokens, _ = sample_tokens(
        logits, "topk", top_k=3, generators=gen, owner=torch.zeros(20000, dtype=torch.long)
    )
    freq = torch.bincount(tokens, minlength=3).double() / 20000
    assert torch.allclose(freq, probs, atol=0.015)


def test_owner_mapping_draws_in_row_order_per_generator():
    owner = torch.tensor([1, 0, 1, 0, 1])
    u = draw_uniforms(_gens(2), owner, 5)
    first = torch.rand(2, generator=_gens(1, 0)[0], dtype=torch.float64)
    second = torch.rand(3, generator=_gens(1, 1)[0], dtype=torch.float64)
    assert torch.equal(u[owner == 0], first)
    assert torch.equal(u[owner == 1], second)


def test_unknown_method():
    with pytest.raises(ValueError, match="greedy"):
        sample_tokens(torch.zeros(1, 3), "beam", generators=_gens(1))


@pytest.mark.parametrize(("n", "v", "k"), [(3, 30522, 50), (5, 1000, 3), (2, 100, 50)])
def test_fast_topk_matches_topk(n, v, k):
    logits = torch.randn(n, v, generator=torch.Generator().manual_seed(3))
    values, index = fast_topk(logits, k)
    expected = logits.topk(k, dim=-1)
    assert torch.equal(values, expected.values)
    assert torch.equal(logits.gather(1, index), values)
    assert (index.sort(dim=1).values.diff(dim=1) > 0).all()  # distinct positions
