"""Evaluation: the CE(t) grid on the tiny model, the ELBO bound, and sample metrics."""

from __future__ import annotations

import math

import pytest
import torch

from shared.contracts.bound import Bound, elbo_bound, quadrature_weights
from worker.diffusion.evaluation import (
    bleu,
    evaluate_ratios,
    real_word_share,
    sample_metrics,
    unigram_entropy,
    word_tokenize,
)

# ---------------------------------------------------------------------------------------
# Bound


def test_constant_ce_gives_that_bound():
    ratios = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    bound = elbo_bound(ratios, [2.5] * len(ratios))
    assert bound.nats_per_token == pytest.approx(2.5)
    assert bound.perplexity == pytest.approx(math.exp(2.5))
    assert bound.bits_per_token == pytest.approx(2.5 / math.log(2))


def test_linear_ce_on_midpoint_grid_is_exact():
    n = 8
    ratios = [(k - 0.5) / n for k in range(1, n + 1)]
    losses = [1.0 + 3.0 * t for t in ratios]  # integral over (0, 1] = 1 + 3/2
    assert elbo_bound(ratios, losses).nats_per_token == pytest.approx(2.5)


@pytest.mark.parametrize(
    "ratios", [[1.0], [0.5, 0.1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]]
)
def test_weights_sum_to_one(ratios):
    weights = quadrature_weights(ratios)
    assert sum(weights) == pytest.approx(1.0)
    assert all(w > 0 for w in weights)


def test_weights_follow_the_given_order():
    # sorted 0.1, 0.5: cells [0, 0.3] and [0.3, 1]
    assert quadrature_weights([0.5, 0.1]) == pytest.approx([0.7, 0.3])


@pytest.mark.parametrize(
    ("ratios", "losses", "message"),
    [
        ([], [], "at least one"),
        ([0.5], [1.0, 2.0], "1 ratios but 2 losses"),
        ([0.0, 0.5], [1.0, 1.0], "outside"),
        ([0.5, 1.2], [1.0, 1.0], "outside"),
        ([0.5, 0.5], [1.0, 1.0], "distinct"),
        ([0.5, 1.0], [1.0, math.nan], "finite"),
    ],
)
def test_bad_bound_inputs_raise(ratios, losses, message):
    with pytest.raises(ValueError, match=message):
        elbo_bound(ratios, losses)


def test_huge_loss_gives_infinite_perplexity():
    assert elbo_bound([1.0], [1000.0]) == Bound(1000.0, math.inf, 1000.0 / math.log(2))


# ---------------------------------------------------------------------------------------
# CE(t) grid on the tiny model


@pytest.fixture(scope="module")
def blocks(tiny_model, tiny_corpus) -> torch.Tensor:
    """(6, 24) blocks shaped like data.pack: CLS, content, SEP."""
    _, tokenizer = tiny_model
    ids = tokenizer(" ".join(tiny_corpus[:4]), add_special_tokens=False)["input_ids"][: 6 * 22]
    body = torch.tensor(ids).view(6, 22)
    cls = torch.full((6, 1), tokenizer.cls_token_id)
    sep = torch.full((6, 1), tokenizer.sep_token_id)
    return torch.cat([cls, body, sep], dim=1)


def test_evaluate_ratios_is_deterministic_and_sane(tiny_model, blocks):
    model, tokenizer = tiny_model
    ratios = [0.1, 0.5, 1.0]
    first = evaluate_ratios(model, blocks, tokenizer, ratios, batch_size=4)
    second = evaluate_ratios(model, blocks, tokenizer, ratios, batch_size=4)
    assert first == second
    assert [r.ratio for r in first] == ratios
    for result in first:
        assert math.isfinite(result.loss)
        assert 0.0 <= result.accuracy <= 1.0
        # untrained: about the loss of a uniform guess over the vocabulary
        assert abs(result.loss - math.log(len(tokenizer))) < 1.0
    # 22 maskable tokens per row (CLS and SEP never counted), 6 rows
    assert [r.tokens for r in first] == [6 * round(t * 22) for t in ratios]


def test_evaluate_ratios_keeps_prefix_batches_and_mode(tiny_model, blocks):
    model, tokenizer = tiny_model
    model.train()
    try:
        results = evaluate_ratios(
            model, blocks, tokenizer, [1.0], batch_size=2, max_batches=1, prefix_length=5
        )
        assert model.training  # mode restored
    finally:
        model.eval()
    # one batch of 2 rows; CLS + 4 prefix tokens and SEP are never masked
    assert results[0].tokens == 2 * (24 - 5 - 1)


def test_evaluate_ratios_changes_with_seed(tiny_model, blocks):
    model, tokenizer = tiny_model
    a = evaluate_ratios(model, blocks, tokenizer, [0.3], seed=0)
    b = evaluate_ratios(model, blocks, tokenizer, [0.3], seed=1)
    assert a[0].tokens == b[0].tokens
    assert a[0].loss != b[0].loss


def test_unigram_entropy(tiny_model, blocks):
    _, tokenizer = tiny_model
    two = torch.tensor([[0, 5, 6, 2], [0, 5, 6, 2]])
    assert unigram_entropy(two, tokenizer.all_special_ids) == pytest.approx(math.log(2))
    h = unigram_entropy(blocks, tokenizer.all_special_ids)
    assert 0.0 < h < math.log(len(tokenizer))
    with pytest.raises(ValueError, match="no non-special"):
        unigram_entropy(torch.tensor([[0, 2]]), tokenizer.all_special_ids)


# ---------------------------------------------------------------------------------------
# Sample metrics


def test_word_tokenize():
    assert word_tokenize("Hi, Bob!") == ["hi", ",", "bob", "!"]


def test_sample_metrics_known_values():
    m = sample_metrics(["a b a b", "c d"])
    assert m["mean_length"] == 3.0
    assert m["distinct_1"] == pytest.approx(4 / 6)
    assert m["distinct_2"] == pytest.approx(3 / 4)  # ab, ba, ab | cd
    assert m["distinct_3"] == pytest.approx(2 / 2)  # aba, bab
    assert m["max_token_share"] == pytest.approx(0.5)
    assert m["repetition_rate"] == pytest.approx(2 / 6)  # the second a and b
    assert m["entropy"] == pytest.approx(
        -(2 * (1 / 3) * math.log(1 / 3) + 2 * (1 / 6) * math.log(1 / 6))
    )


def test_degenerate_sample_has_full_token_share():
    assert sample_metrics(["the the the", "a dog ran"])["max_token_share"] == 1.0


def test_self_bleu_identical_disjoint_and_single():
    text = "the old farmer walked to the quiet river in the morning ."
    assert sample_metrics([text, text, text])["self_bleu"] == pytest.approx(1.0)
    assert sample_metrics(["alpha beta gamma delta", "one two three four"])["self_bleu"] == 0.0
    assert sample_metrics([text])["self_bleu"] == 0.0


def test_bleu_partial_overlap_is_between():
    hyp = ["the", "old", "farmer", "walked", "to", "the", "river"]
    ref = ["the", "old", "farmer", "ran", "past", "the", "city", "gate"]
    score = bleu(hyp, [ref])
    assert 0.0 < score < 1.0


def test_empty_inputs():
    m = sample_metrics([])
    assert m["mean_length"] == 0.0 and m["self_bleu"] == 0.0
    assert sample_metrics([""])["entropy"] == 0.0


def test_real_word_share():
    assert real_word_share(["The king walked, zzq."], {"the", "king", "walked"}) == 0.75
