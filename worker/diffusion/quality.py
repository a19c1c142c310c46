"""The quality of one sample set: judge perplexity with entropy, and MAUVE.

`sample_set_quality` is what a generation job (or a frontier point) stores per sample set.
It invents nothing: without a judge the judge columns are None, and MAUVE is None with the
reason when there is no reference text or too few texts. The entropy stands beside the
judge perplexity wherever it is shown, because low-entropy samples game that number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.contracts.specs import TrainSpec

from . import data as data_lib
from .diversity import mean_diversity
from .judge import judge_perplexity
from .mauve import DEFAULT_FEATURIZER, MIN_TEXTS, mauve_score, reference_snippets


@dataclass(frozen=True)
class SampleSetQuality:
    judge_ppl: float | None  # perplexity of the generated tokens under the judge
    judge_nats_per_token: float | None
    judge_tokens: int | None  # generated tokens scored, in the judge's tokenizer
    judge_nll: list[float | None] | None  # per text: NLL per token (None: nothing scored)
    entropy: float | None  # mean per-sample unigram entropy (nats); see `entropy_tokens`
    repetition: float | None  # mean per-sample share of repeated 4-grams, same tokens
    entropy_tokens: str | None  # "judge" or "model": whose tokens entropy/repetition count
    mauve: float | None  # MAUVE against the references, in (0, 1]
    mauve_reason: str | None  # why there is no MAUVE
    mauve_references: int | None  # reference texts MAUVE compared with
    mauve_at_floor: bool | None  # MAUVE is the score of two fully separated sets
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
    tokenizer: Any = None,
    references: Sequence[str] | Callable[[int], Sequence[str]] | None = None,
    featurizer: str = DEFAULT_FEATURIZER,
    min_texts: int = MIN_TEXTS,
    batch_size: int = 16,
) -> SampleSetQuality:
    """Judge perplexity and entropy of `completions` (the generated parts, given
    `prompts`) under `judge` = (causal model, its tokenizer) from `judge.load_judge`, and
    MAUVE of the completions against `references` (e.g. `validation_references`).

    Without a judge the entropy is counted in `tokenizer`'s tokens (the generating
    model's), or left None without one. `references` may be a function of the number of
    texts wanted, called only when there are enough completions for MAUVE (reading a
    validation split is not free).
    """
    scores = None
    entropy, repeated, entropy_tokens, per_text = None, None, None, None
    if judge is not None:
        model, judge_tokenizer = judge
        scores = judge_perplexity(
            model, judge_tokenizer, completions, prompts, batch_size=batch_size
        )
        entropy, repeated, entropy_tokens = scores.entropy, scores.repetition, "judge"
        per_text = [
            nll / n if n else None for nll, n in zip(scores.nll, scores.tokens, strict=True)
        ]
    elif tokenizer is not None:
        ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        entropy, repeated = mean_diversity(ids)
        entropy_tokens = "model"
    result = None
    if references is None:
        mauve, reason = None, "no reference text to compare with"
    elif len(completions) < min_texts:
        mauve = None
        reason = f"MAUVE needs at least {min_texts} samples; this set has {len(completions)}"
    else:
        texts = references(len(completions)) if callable(references) else references
        result = mauve_score(completions, texts, featurizer=featurizer, min_texts=min_texts)
        mauve, reason = result.score, result.reason
    return SampleSetQuality(
        judge_ppl=scores.perplexity if scores else None,
        judge_nats_per_token=scores.nats_per_token if scores else None,
        judge_tokens=sum(scores.tokens) if scores else None,
        judge_nll=per_text,
        entropy=entropy,
        repetition=repeated,
        entropy_tokens=entropy_tokens,
        mauve=mauve,
        mauve_reason=reason,
        mauve_references=result.q_texts if result is not None else None,
        mauve_at_floor=(
            mauve <= result.floor + 1e-9 if mauve is not None and result.floor else None
        ),
        mauve_featurizer=featurizer,
    )
