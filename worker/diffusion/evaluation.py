"""Evaluation: the per-mask-ratio loss grid, the ELBO perplexity bound, and sample metrics.

Loss grid. `evaluate_ratios` computes CE(t), the mean cross-entropy (nats) per masked token
when exactly round(t * n) of a row's n maskable tokens are masked, on a fixed grid of ratios
t. Masks come from seeded generators, so two calls on the same blocks see the same masks and
curves from different checkpoints are comparable point by point.

Bound. For a masked diffusion LM the negative log-likelihood per token is bounded by the
integral of CE(t) over t in (0, 1] (MDLM, LLaDA: the 1/t ELBO weight cancels the t*L masked
tokens). `elbo_bound` integrates the grid by midpoint quadrature and returns the bound in
nats, bits and as a perplexity.

Samples. `sample_metrics` measures a set of generated texts: length, unigram entropy,
distinct-n, repetition, the share of the most frequent token, and self-BLEU.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.contracts.bound import Bound, elbo_bound
from shared.contracts.specs import MaskingSpec

from .masking import mask_tokens, seeded_generator, special_ids
from .modeling import masked_logits

# ---------------------------------------------------------------------------------------
# Per-mask-ratio loss grid


@dataclass(frozen=True)
class RatioResult:
    ratio: float  # mask ratio t in (0, 1]
    loss: float  # mean cross-entropy, nats per masked token
    accuracy: float  # share of masked tokens whose argmax prediction is the original token
    tokens: int  # masked tokens scored


def _batches(blocks: torch.Tensor, batch_size: int, max_batches: int | None) -> list[torch.Tensor]:
    chunks = list(torch.split(blocks, batch_size))
    return chunks if max_batches is None else chunks[:max_batches]


def _score_ratio(
    model,
    batches: list[torch.Tensor],
    tokenizer,
    ratio: float,
    generator: torch.Generator,
    prefix_length: int,
) -> RatioResult:
    """Sum CE and correct predictions over `batches` masked at `ratio`."""
    device = next(model.parameters()).device
    spec = MaskingSpec(mode="grid", prefix_length=prefix_length)
    special = special_ids(tokenizer)
    pad = tokenizer.pad_token_id
    loss_sum, correct, count = 0.0, 0, 0
    for ids in batches:
        ids = ids.cpu()  # masks are drawn on the CPU so they match on every device
        attention = ids != pad if pad is not None else torch.ones_like(ids, dtype=torch.bool)
        batch = mask_tokens(
            ids,
            spec,
            special_ids=special,
            mask_token_id=tokenizer.mask_token_id,
            generator=generator,
            ratios=torch.full((ids.shape[0],), ratio, dtype=torch.float64),
        )
        where = batch.masked  # (B, T); a row with no maskable token masks nothing
        if not where.any():
            continue
        logits = masked_logits(
            model, batch.input_ids.to(device), attention.long().to(device), where.to(device)
        ).float()  # (N, V); float so autocast's bf16 does not round the loss
        targets = ids[where].to(device)  # (N,)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        correct += int((logits.argmax(dim=-1) == targets).sum())
        count += int(targets.numel())
    loss = loss_sum / count if count else math.nan
    accuracy = correct / count if count else math.nan
    return RatioResult(float(ratio), loss, accuracy, count)


def evaluate_ratios(
    model,
    blocks: torch.Tensor,
    tokenizer,
    ratios: Sequence[float],
    *,
    batch_size: int = 16,
    max_batches: int | None = None,
    seed: int = 0,
    prefix_length: int = 0,
) -> list[RatioResult]:
    """CE(t) and accuracy at each mask ratio t of `ratios`, with fixed masks.

    blocks: (M, T) token ids (padding, if any, is the tokenizer's pad id). Each row has
    exactly round(t * n) of its n maskable tokens masked (at least one); special tokens,
    padding and the first `prefix_length` positions are never masked nor scored. Masks for
    grid point i come from a generator seeded by (seed, i), so repeated calls agree.

    Runs under `torch.inference_mode()` with the model in eval mode, restoring its previous
    mode afterwards; any autocast context the caller opened applies to the forward passes.
    Returns one `RatioResult` per ratio, in the order given.
    """
    if blocks.ndim != 2:
        raise ValueError(f"blocks must be (M, T) token ids, got shape {tuple(blocks.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batches = _batches(blocks, batch_size, max_batches)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return [
                _score_ratio(model, batches, tokenizer, r, seeded_generator(seed, i), prefix_length)
                for i, r in enumerate(ratios)
            ]
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------
# ELBO perplexity bound


def bound_of(results: Sequence[RatioResult]) -> Bound:
    """`elbo_bound` of an `evaluate_ratios` grid."""
    return elbo_bound([r.ratio for r in results], [r.loss for r in results])


# ---------------------------------------------------------------------------------------
# Corpus baseline


def unigram_entropy(blocks: torch.Tensor, special_ids: Iterable[int] | torch.Tensor) -> float:
    """Entropy (nats) of the unigram distribution of the non-special tokens in `blocks`.

    blocks: (M, T) ids. A model that ignores context entirely can reach this loss at
    t = 1, so a trained model's CE(t) should be below it everywhere.
    """
    ids = blocks.reshape(-1).cpu()  # (M * T,)
    special = torch.tensor([int(i) for i in special_ids], dtype=ids.dtype)
    ids = ids[~torch.isin(ids, special)]
    if ids.numel() == 0:
        raise ValueError("blocks hold no non-special tokens")
    counts = torch.bincount(ids).to(torch.float64)
    return _entropy(counts[counts > 0])


def _entropy(counts: torch.Tensor) -> float:
    p = counts / counts.sum()
    return float(-(p * p.log()).sum())


# ---------------------------------------------------------------------------------------
# Sample metrics

_WORD = re.compile(r"\w+|[^\w\s]")


def word_tokenize(text: str) -> list[str]:
    """Lowercase words and single punctuation marks: "Hi, Bob!" -> ['hi', ',', 'bob', '!']."""
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Unique n-grams / total n-grams, pooled over all texts (0 when there are none)."""
    grams = [g for tokens in token_lists for g in _ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(token_lists: Sequence[Sequence[str]], window: int = 4) -> float:
    """Share of tokens equal to one of the `window` tokens before them in the same text.

    The rep/l measure of Welleck et al. (2019, unlikelihood training) with l = window,
    pooled over texts: every token counts in the denominator, including the first.
    """
    repeats = total = 0
    for tokens in token_lists:
        for i, tok in enumerate(tokens):
            repeats += tok in tokens[max(0, i - window) : i]
        total += len(tokens)
    return repeats / total if total else 0.0


def max_token_share(token_lists: Sequence[Sequence[str]]) -> float:
    """Largest share one token takes of a single text, maxed over texts: 1.0 means some
    sample is one token repeated (a degenerate generation)."""
    shares = [max(Counter(t).values()) / len(t) for t in token_lists if t]
    return max(shares, default=0.0)


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Sentence BLEU-`max_n` of `hypothesis` against `references`, with add-one smoothing.

    Modified n-gram precision p_n clips each n-gram's count by its largest count in any one
    reference. Smoothing (Lin & Och 2004): p_n = (matches + 1) / (total + 1) for n >= 2, so
    a short text without 4-gram matches is not zeroed; p_1 is unsmoothed, so a text sharing
    no word with the references scores 0. Brevity penalty exp(1 - r/c) when the hypothesis
    length c is below the closest reference length r (ties to the shorter). Geometric mean
    with uniform weights.
    """
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(_ngrams(hypothesis, n))
        best: Counter[tuple[str, ...]] = Counter()
        for ref in references:
            best |= Counter(_ngrams(ref, n))  # |= keeps the max count per n-gram
        matches = sum(min(c, best[g]) for g, c in counts.items())
        total = sum(counts.values())
        if n == 1 and matches == 0:
            return 0.0
        p = matches / total if n == 1 else (matches + 1) / (total + 1)
        log_precision += math.log(p) / max_n
    c = len(hypothesis)
    r = min((len(ref) for ref in references), key=lambda length: (abs(length - c), length))
    brevity = 1.0 if c >= r else math.exp(1 - r / c)
    return brevity * math.exp(log_precision)


def self_bleu(token_lists: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Mean BLEU of each text against all the others: 1 for identical texts, near 0 for
    texts with nothing in common, 0 for fewer than two texts. O(N^2) in the number of
    texts."""
    if len(token_lists) < 2:
        return 0.0
    scores = [
        bleu(hyp, [ref for j, ref in enumerate(token_lists) if j != i], max_n)
        for i, hyp in enumerate(token_lists)
    ]
    return sum(scores) / len(scores)


def sample_metrics(
    texts: Sequence[str], tokenize: Callable[[str], list[str]] | None = None
) -> dict[str, float]:
    """Quality and diversity of a sample set; tokens come from `tokenize` (default:
    `word_tokenize`, lowercase words and punctuation).

    Keys: mean_length (tokens per text), entropy (nats, of the pooled unigram distribution),
    distinct_1/2/3, repetition_rate (`repetition_rate`, window 4), max_token_share,
    self_bleu (BLEU-4, `self_bleu`).
    """
    tokenize = tokenize or word_tokenize
    token_lists = [tokenize(text) for text in texts]
    pooled = Counter(tok for tokens in token_lists for tok in tokens)
    counts = torch.tensor(list(pooled.values()), dtype=torch.float64)
    return {
        "mean_length": sum(map(len, token_lists)) / len(token_lists) if token_lists else 0.0,
        "entropy": _entropy(counts) if pooled else 0.0,
        "distinct_1": distinct_n(token_lists, 1),
        "distinct_2": distinct_n(token_lists, 2),
        "distinct_3": distinct_n(token_lists, 3),
        "repetition_rate": repetition_rate(token_lists),
        "max_token_share": max_token_share(token_lists),
        "self_bleu": self_bleu(token_lists),
    }


def real_word_share(texts: Sequence[str], vocabulary: Iterable[str]) -> float:
    """Share of alphabetic words in `texts` (lowercased) that appear in `vocabulary`, e.g.
    the word set of the training corpus: a cheap check that samples are not BPE gibberish."""
    known = {w.lower() for w in vocabulary}
    words = [w for text in texts for w in word_tokenize(text) if w.isalpha()]
    return sum(w in known for w in words) / len(words) if words else 0.0
