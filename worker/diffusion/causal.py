"""Autoregressive baselines: the same encoder and initialisation, trained left to right.

The field's headline question is how far a masked diffusion LM is from an AR model of the
same size, data and compute. Here the AR model is not a different network: it is the very
masked LM that diffusion training starts from (the packaged MiniLM, a scratch RoBERTa, any
BERT/RoBERTa-family checkpoint), with `config.is_decoder = True` so that every layer uses a
causal attention mask, and loaded as its `AutoModelForCausalLM` class (BertLMHeadModel,
RobertaForCausalLM). Those classes hold the same parameter names as the masked LM classes,
so `causal_from_masked` copies every weight, including a fresh head's output bias set to the
log unigram frequencies, and fails if one would be left at random.

Token accounting matches the diffusion bound: position p's hidden state predicts token p+1,
and the tokens scored are exactly those the bound scores (non-special, non-padding, past
`prefix_length`), so "bound <= X" and "exactly Y" are per-token figures on the same tokens.
The first token of a block is predicted from [CLS] alone, as the bound predicts it with
everything masked.

A saved AR checkpoint is a plain `save_pretrained` directory whose config says
`is_decoder: true`, so `AutoModelForCausalLM.from_pretrained(dir)` loads it (as a judge,
or in any transformers code).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from .confine import OutsideRoot, model_dir
from .masking import IGNORE_INDEX
from .modeling import ModelSourceError, encode, lm_head, quiet_transformers
from .objectives import Objective


def causal_from_masked(model: PreTrainedModel) -> PreTrainedModel:
    """The causal LM with exactly the weights of masked LM `model` (a new module; `model`
    is left as it was).

    Raises ModelSourceError when the architecture has no causal LM class or when any
    parameter or buffer would not be copied (so nothing is silently re-initialised).
    """
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.is_decoder = True
    config.architectures = None
    try:
        with quiet_transformers():
            causal = AutoModelForCausalLM.from_config(config)
    except ValueError as exc:
        raise ModelSourceError(
            f"{type(model).__name__} has no causal LM class in transformers, so it cannot be "
            "trained autoregressively"
        ) from exc
    result = causal.load_state_dict(model.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelSourceError(
            f"turning {type(model).__name__} into {type(causal).__name__} would leave "
            f"{result.missing_keys} at random and drop {result.unexpected_keys}"
        )
    causal.tie_weights()
    causal.fresh_head = getattr(model, "fresh_head", False)
    causal.train(model.training)
    return causal


def max_positions(model: PreTrainedModel) -> int:
    """Longest sequence the model's position embeddings allow."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or 10**9
    if getattr(config, "model_type", "") in ("roberta", "camembert", "xlm-roberta"):
        limit -= (config.pad_token_id or 0) + 1  # RoBERTa numbers positions from pad + 1
    return limit


def is_causal_checkpoint(directory: str | Path) -> bool:
    """True when the `save_pretrained` directory holds a causal LM (an AR run's checkpoint):
    its config names a causal architecture or sets `is_decoder`."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        return False
    config = json.loads(path.read_text())
    names = config.get("architectures") or []
    return bool(config.get("is_decoder")) or any(
        n.endswith(("ForCausalLM", "LMHeadModel")) for n in names
    )


def load_causal_checkpoint(directory: str | Path):
    """(model, tokenizer, meta) of an AR checkpoint written by the training loop (or any
    local causal LM directory); meta is its spec file's content, {} without one."""
    from transformers import AutoTokenizer

    from .modeling import SPEC_FILE

    try:
        directory = model_dir(Path(directory))  # confined to the model roots, file by file
    except OutsideRoot as exc:
        raise ModelSourceError(str(exc)) from exc
    if not is_causal_checkpoint(directory):
        raise ModelSourceError(f"{directory} does not hold a causal LM checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.model_max_length = int(1e9)  # we pack ourselves; no length warnings
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(directory)
    spec_path = directory / SPEC_FILE
    meta = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
    return model, tokenizer, meta


def check_causal(model: PreTrainedModel, vocab_size: int | None = None) -> None:
    """Raise ModelSourceError unless changing later tokens leaves earlier logits unchanged.

    A probe of one 8-token sequence: a masked LM loaded through `AutoModelForCausalLM`
    without `is_decoder` would otherwise attend both ways and score text it can see.
    """
    device = next(model.parameters()).device
    high = min(vocab_size or model.config.vocab_size, 1000)
    low = high // 2  # ordinary tokens: special ids come first in our vocabularies
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(low, high, (1, 8), generator=g)  # (1, 8)
    changed = ids.clone()
    changed[0, 4:] = (ids[0, 4:] - low + 1) % (high - low) + low  # every later token differs
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            a = model(input_ids=ids.to(device)).logits[0, :4].float()  # (4, V)
            b = model(input_ids=changed.to(device)).logits[0, :4].float()
    finally:
        model.train(was_training)
    if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
        raise ModelSourceError(
            f"{type(model).__name__} is not causal: its predictions for early tokens depend on "
            "later ones (a masked LM needs config.is_decoder=True to be scored left to right)"
        )


def scored_positions(
    input_ids: torch.Tensor,
    special_ids: torch.Tensor,
    *,
    prefix_length: int = 0,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T) bool: the tokens whose likelihood counts, the same set the diffusion bound
    scores. input_ids (B, T); special_ids (S,)."""
    scored = ~torch.isin(input_ids, special_ids.to(input_ids.device))
    if attention_mask is not None:
        scored &= attention_mask.bool()
    scored[:, : max(prefix_length, 1)] = False  # position 0 has nothing to predict it from
    return scored


def next_token_labels(input_ids: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """(B, T) labels aligned with the position that predicts them: labels[:, p] is token
    p+1 where that token is scored, IGNORE_INDEX elsewhere (always at the last position)."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = torch.where(scored[:, 1:], input_ids[:, 1:], IGNORE_INDEX)
    return labels


class CausalObjective(Objective):
    """Next-token prediction with causal attention (the AR baseline): cross-entropy of
    every scored token given the tokens before it, logits only where a token is scored."""

    def __init__(self, model: nn.Module, special_ids: torch.Tensor, prefix_length: int = 0):
        super().__init__(model)
        self.special_ids = special_ids  # (S,) never scored; a plain attribute, not state
        self.prefix_length = prefix_length

    def inputs(self, ids, generator):
        """No randomness: `generator` is unused. Each scored token weighs 1 / (tokens
        scored in the whole micro-batch), as a masked token does in grid-mode diffusion."""
        scored = scored_positions(ids, self.special_ids, prefix_length=self.prefix_length)
        labels = next_token_labels(ids, scored)  # (B, T)
        where = labels != IGNORE_INDEX
        rows = {
            "input_ids": ids,  # (B, T) packed: no padding
            "attention_mask": torch.ones_like(ids),  # (B, T)
            "labels": labels,  # (B, T) the next token, IGNORE_INDEX where not scored
            "weights": where.float() / max(int(where.sum()), 1),  # (B, T)
        }
        return rows, {}


@dataclass(frozen=True)
class CausalEval:
    """Exact per-token likelihood; the first three fields mirror `Bound`'s."""

    nats_per_token: float
    perplexity: float
    bits_per_token: float
    tokens: int  # tokens scored
    accuracy: float  # share of tokens that are the argmax prediction


def evaluate_causal(
    model: PreTrainedModel,
    blocks: torch.Tensor,
    tokenizer,
    *,
    batch_size: int = 16,
    max_batches: int | None = None,
    prefix_length: int = 0,
) -> CausalEval:
    """Exact NLL per token of `blocks` (M, T) under causal LM `model`.

    Scores the same tokens, in the same batches (`batch_size`, the first `max_batches`),
    as `evaluation.evaluate_ratios` does, so the result sits beside the ELBO bound of a
    diffusion run on the same held-out blocks. Runs in inference mode, restoring the
    model's train/eval mode; an autocast context opened by the caller applies.
    """
    if blocks.ndim != 2:
        raise ValueError(f"blocks must be (M, T) token ids, got shape {tuple(blocks.shape)}")
    device = next(model.parameters()).device
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    pad = tokenizer.pad_token_id
    batches = list(torch.split(blocks, batch_size))[:max_batches]
    nll, correct, count = 0.0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for ids in batches:
                attention = (
                    ids != pad if pad is not None else torch.ones_like(ids, dtype=torch.bool)
                )
                scored = scored_positions(
                    ids, special, prefix_length=prefix_length, attention_mask=attention
                )
                labels = next_token_labels(ids, scored)  # (B, T)
                where = labels != IGNORE_INDEX
                if not where.any():
                    continue
                hidden = encode(model, ids.to(device), attention.long().to(device))  # (B, T, H)
                logits = lm_head(model)(hidden[where.to(device)]).float()  # (N, V)
                targets = labels[where].to(device)
                nll += F.cross_entropy(logits, targets, reduction="sum").item()
                correct += int((logits.argmax(dim=-1) == targets).sum())
                count += int(targets.numel())
    finally:
        model.train(was_training)
    if not count:
        raise ValueError("the blocks hold no token to score")
    nats = nll / count
    ppl = math.exp(nats) if nats < 700 else math.inf
    return CausalEval(nats, ppl, nats / math.log(2), count, correct / count)
