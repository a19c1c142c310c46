"""Iterative denoising on the real tiny model: prefixes, seeds, batching, strategies, blocks."""

from __future__ import annotations

from typing import get_args

import pytest

from shared.contracts.grid import SamplerSpec
from shared.contracts.options import Strategy
from worker.diffusion.generate import generate, get_strategy, infill

PROMPTS = ["The old farmer", "A", "My brother walked to the city gate in the morning"]


def _prefix_ids(tokenizer, prompt):
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_prefix_kept_and_no_masks_left(tiny_model):
    model, tok = tiny_model
    samples = generate(model, tok, PROMPTS, SamplerSpec(steps=4), length=12, num_samples=2)
    assert [s.prompt for s in samples] == [p for p in PROMPTS for _ in range(2)]
    assert [s.seed for s in samples] == [0, 1] * len(PROMPTS)
    for s in samples:
        prefix = _prefix_ids(tok, s.prompt)
        assert s.token_ids[0] == tok.cls_token_id and s.token_ids[-1] == tok.sep_token_id
        assert s.token_ids[1 : 1 + len(prefix)] == prefix
        assert len(s.token_ids) == len(prefix) + 12 + 2
        assert tok.mask_token_id not in s.token_ids
        assert not set(s.token_ids[1 + len(prefix) : -1]) & set(tok.all_special_ids)
        assert sum(not g for g in s.given) == 12
        assert all((at == -1) == g for at, g in zip(s.committed_at, s.given, strict=True))
        assert s.forward_passes == 4


def test_same_seed_reproduces_different_seeds_differ(tiny_model):
    model, tok = tiny_model
    spec = SamplerSpec(steps=3, temperature=1.0)
    a = generate(model, tok, ["The king"], spec, length=10, num_samples=2, seed=5)
    b = generate(model, tok, ["The king"], spec, length=10, num_samples=2, seed=5)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert a[0].token_ids != a[1].token_ids
    assert [s.seed for s in a] == [5, 6]


@pytest.mark.parametrize("strategy", ["confidence", "random", "threshold"])
def test_batch_equals_single_runs(tiny_model, strategy):
    model, tok = tiny_model
    spec = SamplerSpec(steps=4, strategy=strategy, threshold=0.01, temperature=1.0)
    batched = generate(model, tok, PROMPTS, spec, length=10, num_samples=2, seed=3, batch_size=6)
    for i, prompt in enumerate(PROMPTS):
        for j in range(2):
            single = generate(model, tok, [prompt], spec, length=10, seed=3 + j, batch_size=1)[0]
            got = batched[2 * i + j]
            assert got.token_ids == single.token_ids
            assert got.committed_at == single.committed_at
            assert got.forward_passes == single.forward_passes


def test_infilling_keeps_known_tokens(tiny_model):
    model, tok = tiny_model
    templates = ["The [MASK] walked to [MASK:3] in the morning.", "[MASK:2] the quiet river"]
    samples = infill(model, tok, templates, SamplerSpec(steps=2), num_samples=2)
    for s in samples:
        assert tok.mask_token_id not in s.token_ids
        assert sum(not g for g in s.given) in (4, 2)
        known = [t for t, g in zip(s.token_ids, s.given, strict=True) if g]
        reference = infill(model, tok, [s.prompt], SamplerSpec(steps=2), seed=99)[0]
        assert known == [t for t, g in zip(reference.token_ids, reference.given, strict=True) if g]
        assert " walked to" in s.text or " the quiet river" in s.text
    assert samples[0].completion.count(" | ") == 1
    with pytest.raises(ValueError, match="MASK"):
        infill(model, tok, ["nothing to fill"], SamplerSpec())


@pytest.mark.parametrize("strategy", get_args(Strategy))
@pytest.mark.parametrize("sampling", ["greedy", "topk", "nucleus"])
def test_every_strategy_finishes(tiny_model, strategy, sampling):
    model, tok = tiny_model
    spec = SamplerSpec(steps=5, strategy=strategy, sampling=sampling, schedule="cosine")
    (s,) = generate(model, tok, ["The king"], spec, length=8, record_trajectory=True)
    assert tok.mask_token_id not in s.token_ids
    assert 1 <= s.forward_passes <= 8
    assert len(s.trajectory) == s.forward_passes
    assert s.trajectory[-1].tokens == s.token_ids


def test_unknown_strategy():
    with pytest.raises(ValueError, match="confidence"):
        get_strategy("beam")


def test_threshold_counts_passes_and_low_threshold_is_faster(tiny_model):
    model, tok = tiny_model
    high = SamplerSpec(strategy="threshold", threshold=0.99, steps=1024, sampling="greedy")
    low = SamplerSpec(strategy="threshold", threshold=1e-4, steps=1024, sampling="greedy")
    (slow,) = generate(model, tok, ["The king"], high, length=12, record_trajectory=True)
    (fast,) = generate(model, tok, ["The king"], low, length=12, record_trajectory=True)
    # An untrained model is never 99% sure: one commit per pass.
    assert slow.forward_passes == 12 == len(slow.trajectory)
    assert fast.forward_passes < slow.forward_passes
    assert fast.forward_passes == len(fast.trajectory)
    assert max(fast.committed_at) == fast.forward_passes - 1
    # steps caps the passes
    capped = SamplerSpec(strategy="threshold", threshold=0.99, steps=3, sampling="greedy")
    assert generate(model, tok, ["The king"], capped, length=12)[0].forward_passes == 3


@pytest.mark.parametrize("strategy", ["confidence", "random", "threshold"])
def test_blocks_fill_left_block_first(tiny_model, strategy):
    model, tok = tiny_model
    spec = SamplerSpec(steps=4, block_length=4, strategy=strategy, threshold=0.99)
    (s,) = generate(model, tok, ["The king"], spec, length=8)
    at = [a for a, g in zip(s.committed_at, s.given, strict=True) if not g]
    assert max(at[:4]) < min(at[4:])
    assert s.forward_passes == 4


def test_trajectory_steps_follow_the_passes(tiny_model):
    model, tok = tiny_model
    spec = SamplerSpec(steps=4, strategy="confidence")
    (s,) = generate(model, tok, ["The"], spec, length=8, record_trajectory=True)
    assert len(s.trajectory) == s.forward_passes == 4
    masks = [step.tokens.count(tok.mask_token_id) for step in s.trajectory]
    assert masks == [6, 4, 2, 0]
    assert s.trajectory[-1].tokens == s.token_ids
    for step in s.trajectory:
        for token, conf, g in zip(step.tokens, step.confidences, s.given, strict=True):
            assert (conf == 0.0) == (g or token == tok.mask_token_id)
    # Each position appears, with its final token and confidence, at the pass that
    # committed it, and never changes after (confidence re-masks nothing).
    for p, (final, at, g) in enumerate(zip(s.token_ids, s.committed_at, s.given, strict=True)):
        seen = [step.tokens[p] for step in s.trajectory]
        if g:
            assert at == -1 and set(seen) == {final}
            continue
        assert seen == [tok.mask_token_id] * at + [final] * (4 - at)
        confidences = {step.confidences[p] for step in s.trajectory[at:]}
        assert len(confidences) == 1 and 0 < confidences.pop() <= 1


def test_too_long_sequence_is_refused(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="positions"):
        generate(model, tok, ["The"], SamplerSpec(), length=200)
