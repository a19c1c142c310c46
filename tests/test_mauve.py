"""MAUVE against held-out text, with the packaged MiniLM as featuriser (offline)."""

from __future__ import annotations

import random

import pytest

from tests.corpus import sentences
from worker.diffusion.mauve import MIN_TEXTS, mauve_score, reference_snippets


def _texts(n: int, seed: int) -> list[str]:
    return [" ".join(sentences(3, seed=seed + i)) for i in range(n)]


def _shuffled(texts: list[str]) -> list[str]:
    rng = random.Random(0)
    out = []
    for t in texts:
        words = t.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def test_held_out_scores_higher_than_shuffled_words():
    human = _texts(120, seed=1000)
    other = _texts(120, seed=5000)
    same = mauve_score(human, other)
    shuffled = mauve_score(human, _shuffled(other))
    assert same.reason is None and shuffled.reason is None
    assert same.buckets == 12 and same.p_texts == 120
    assert same.score > 0.8
    assert shuffled.score < same.score - 0.3


def test_too_few_texts_give_no_score_and_the_reason():
    result = mauve_score(_texts(50, seed=0), _texts(120, seed=1000))
    assert result.score is None
    assert f"at least {MIN_TEXTS}" in result.reason and "50 samples" in result.reason
    # Empty strings do not count towards the minimum.
    result = mauve_score([*_texts(99, seed=0), ""], _texts(100, seed=1000))
    assert result.score is None and result.p_texts == 99


def test_reference_snippets_have_the_samples_length(tiny_model):
    _, tokenizer = tiny_model
    snippets = reference_snippets(_texts(30, seed=0), tokenizer, n=20, length=16, seed=1)
    assert len(snippets) == 20
    lengths = {len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in snippets}
    assert lengths <= {15, 16, 17}  # BPE may merge or split at a snippet's edge
    assert snippets == reference_snippets(_texts(30, seed=0), tokenizer, 20, 16, seed=1)
    with pytest.raises(ValueError, match="length"):
        reference_snippets(["a b c"], tokenizer, n=1, length=0)
