"""How varied a text is, two ways, both within one sample and in one tokenizer's tokens.

- `unigram_entropy`: the entropy (nats) of the sample's token distribution, as MDLM and its
  successors report beside generative perplexity. It misses phrase loops: "the children of
  israel, the children of israel, ..." reuses a handful of words at a healthy entropy.
- `repetition`: the share of the sample's n-grams (4-grams by default) that repeat an
  earlier one in the same sample. Human prose of a few dozen tokens scores near 0; a loop
  scores near 1.

Judge perplexity rewards low values of both (repeating is easy to predict), so quality is
read against them (`shared.contracts.matched`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

# 4-grams: long enough that ordinary text rarely repeats one within a sample, short enough
# to catch a looping phrase in 32 tokens.
REPEAT_N = 4


def unigram_entropy(tokens: Sequence) -> float:
    """Entropy (nats) of the unigram distribution of one token sequence; 0 when empty."""
    if not tokens:
        return 0.0
    counts = Counter(tokens).values()
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts)


def repetition(tokens: Sequence, n: int = REPEAT_N) -> float:
    """Share of the n-grams of one token sequence that repeat an earlier n-gram of it, in
    [0, 1); 0 when it has fewer than two n-grams."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def mean_diversity(texts_tokens: Sequence[Sequence]) -> tuple[float, float]:
    """(mean unigram entropy, mean repetition) over samples, each in its own tokens."""
    if not texts_tokens:
        return 0.0, 0.0
    k = len(texts_tokens)
    return (
        sum(unigram_entropy(t) for t in texts_tokens) / k,
        sum(repetition(t) for t in texts_tokens) / k,
    )
