"""The quality of one sample set: judge perplexity with entropy, and MAUVE.

`sample_set_quality` is what a generation job (or a frontier point) stores per sample set.
It invents nothing: without a judge the judge columns are None, and MAUVE is None with the
reason when there is no reference text or too few texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.contracts.specs import TrainSpec

from . import data as data_lib
from .judge import judge_perplexity
from .mauve import DEFAULT_FEATURIZER, MIN_TEXTS, mauve_score, reference_snippets


@dataclass(frozen=True)
class SampleSetQuality:
    judge_ppl: float | None  # perplexity of the generated tokens under the judge
    judge_nats_per_token: float | None
    judge_tokens: int | None  # generated tokens scored, in the judge's tokenizer
    entropy: float | None  # mean per-sample unigram entropy (nats), in the judge's tokens
    mauve: float | None  # MAUVE against the references, in (0, 1]
    mauve_reason: str | None  # why there is no MAUVE
    mauve_featurizer: str


def validation_references(spec: TrainSpec, tokenizer, n: int, length: int, seed: int = 0):
    """Up to `n` snippets of `length` tokens from the validation split a run of `spec`
    held out: the human text its samples are compared with."""
    return reference_snippets(data_lib.corpus_for(spec).validation, tokenizer, n, length, seed=seed)


def sample_set_quality(
    completions: Sequence[str],
    prompts: Sequence[str] | None = None,
    *,
    judge: tuple[Any, Any] | None = None,
    references: Sequence[str] | None = None,
    featurizer: str = DEFAULT_FEATURIZER,
    min_texts: int = MIN_TEXTS,
    batch_size: int = 16,
) -> SampleSetQuality:
    """Judge perplexity and entropy of `completions` (the generated parts, given
    `prompts`) under `judge` = (causal model, its tokenizer) from `judge.load_judge`, and
    MAUVE of the completions against `references` (e.g. `validation_references`)."""
    scores = None
    if judge is not None:
        model, tokenizer = judge
        scores = judge_perplexity(model, tokenizer, completions, prompts, batch_size=batch_size)
    if references is None:
        mauve, reason = None, "no reference text to compare with"
    else:
        result = mauve_score(completions, references, featurizer=featurizer, min_texts=min_texts)
        mauve, reason = result.score, result.reason
    return SampleSetQuality(
        judge_ppl=scores.perplexity if scores else None,
        judge_nats_per_token=scores.nats_per_token if scores else None,
        judge_tokens=sum(scores.tokens) if scores else None,
        entropy=scores.entropy if scores else None,
        mauve=mauve,
        mauve_reason=reason,
        mauve_featurizer=featurizer,
    )
