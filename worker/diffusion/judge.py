"""Generative perplexity: score generated text with any causal LM (the "judge").

`judge_perplexity` retokenises every sample with the judge's own tokenizer, conditions on
the prompt, and scores only the generated part, in padded batches. The judge is an AR
run's checkpoint, a local directory, a packaged model or a hub name (`gpt2-large`, the
judge MDLM reports with); `load_judge` refuses a model that is not causal (a masked LM
would see the tokens it is asked to predict).

Low-entropy samples game this number (repeating "the lord" scores well), so the result
always carries the samples' diversity beside the perplexity (`diversity.py`): the mean
over samples of the unigram entropy (nats) of each sample's generated tokens, in the
judge's tokens, as MDLM and its successors report it, and the share of repeated 4-grams,
which sees the phrase loops entropy misses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from .causal import check_causal, max_positions
from .diversity import mean_diversity, unigram_entropy
from .modeling import resolve_model_source


@dataclass(frozen=True)
class JudgeScores:
    nll: list[float]  # per text: summed NLL (nats) of its generated tokens
    tokens: list[int]  # per text: generated tokens scored, in the judge's tokenizer
    nats_per_token: float  # sum(nll) / sum(tokens): token-weighted over the set
    perplexity: float  # exp(nats_per_token)
    entropy: float  # mean per-text unigram entropy (nats) of the generated tokens
    repetition: float  # mean per-text share of repeated 4-grams (`diversity.repetition`)


def load_judge(
    source: str, device: torch.device | str = "cpu", *, cache_dir: str | Path | None = None
):
    """(model, tokenizer) of a causal LM from a local directory, packaged judge
    (`packaged_judge.PACKAGED_JUDGES`, converted once into `cache_dir`), packaged model or
    hub name, in eval mode on `device`. Raises ModelSourceError if it is missing or not
    causal."""
    from .modeling import quiet_transformers
    from .packaged_judge import PACKAGED_JUDGES, cached_judge_dir

    if source in PACKAGED_JUDGES:
        if cache_dir is None:
            raise ValueError(f"the packaged judge {source!r} needs a cache_dir to convert into")
        path = str(cached_judge_dir(source, Path(cache_dir)))
    else:
        path = resolve_model_source(source)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(path)
    model.to(device).eval()
    check_causal(model, len(tokenizer))
    return model, tokenizer


def text_entropy(tokens: Sequence) -> float:
    """Entropy (nats) of the unigram distribution of one token sequence; 0 when empty."""
    return unigram_entropy(tokens)


def _encode(tokenizer, prompt: str, completion: str, limit: int) -> tuple[list[int], int]:
    """(ids, context length): [BOS] + prompt tokens + completion tokens, cut to `limit`.

    The completion is tokenised after a space when there is a prompt, as it reads in the
    full text; without a start token the first completion token becomes context.
    """
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    context = [start] if start is not None else []
    if prompt:
        context += tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion = completion if completion[:1].isspace() else " " + completion
    target = tokenizer(completion, add_special_tokens=False)["input_ids"] if completion else []
    if not context and target:
        context, target = target[:1], target[1:]
    context = context[-max(1, limit // 2) :] if len(context) + len(target) > limit else context
    target = target[: limit - len(context)]
    return context + target, len(context)


def judge_perplexity(
    model: PreTrainedModel,
    tokenizer,
    completions: Sequence[str],
    prompts: Sequence[str] | None = None,
    *,
    batch_size: int = 8,
) -> JudgeScores:
    """Score `completions` (the generated parts) given `prompts` (same length; default
    none) under causal LM `model` with its own `tokenizer`.

    Each text is laid out [BOS] prompt completion in the judge's tokens and only the
    completion's tokens are scored; a text longer than the judge's positions keeps the end
    of its prompt (at most half the window) and the start of its completion. Raises
    ValueError when no text has a token to score.
    """
    prompts = list(prompts) if prompts is not None else [""] * len(completions)
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts for {len(completions)} completions")
    limit = min(max_positions(model), 4096)
    encoded = [_encode(tokenizer, p, c, limit) for p, c in zip(prompts, completions, strict=True)]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    nll: list[float] = []
    counts: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for s in range(0, len(encoded), batch_size):
                chunk = encoded[s : s + batch_size]
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # (B, T)
                attention = torch.zeros_like(ids)
                scored = torch.zeros_like(ids, dtype=torch.bool)
                for b, (row, ctx) in enumerate(chunk):
                    ids[b, : len(row)] = torch.tensor(row)
                    attention[b, : len(row)] = 1
                    scored[b, ctx : len(row)] = True
                logits = model(
                    input_ids=ids.to(device), attention_mask=attention.to(device)
                ).logits  # (B, T, V)
                ce = F.cross_entropy(
                    logits[:, :-1].float().transpose(1, 2), ids[:, 1:].to(device), reduction="none"
                ).cpu()  # (B, T - 1): -log p(token t+1 | tokens <= t)
                target = scored[:, 1:]
                nll += (ce * target).sum(dim=1).tolist()
                counts += target.sum(dim=1).tolist()
    finally:
        model.train(was_training)
    total = sum(counts)
    if total == 0:
        raise ValueError("no completion has a token to score")
    nats = sum(nll) / total
    entropy, repeated = mean_diversity([row[ctx:] for row, ctx in encoded if len(row) > ctx])
    return JudgeScores(
        nll=nll,
        tokens=[int(c) for c in counts],
        nats_per_token=nats,
        perplexity=math.exp(nats) if nats < 700 else math.inf,
        entropy=entropy,
        repetition=repeated,
    )
