"""Batched iterative denoising: generate from a prompt, or fill templates, by unmasking.

A sequence starts as `[CLS] prompt [MASK]*length [SEP]` (or a template whose `[MASK]`s are
to be filled). Each pass runs the encoder, computes vocabulary logits only at the positions
that need them, samples tokens there (`sampling.sample_tokens`) and lets a *strategy*
decide which positions to commit and which stay masked:

- random: every generated position of the block is re-predicted each pass, then a random
  subset re-masked so that the schedule's count stays masked (the original design).
- confidence: commit the masked positions whose sampled token is most likely (LLaDA's
  low-confidence remasking).
- margin: largest gap between the two most likely tokens first.
- entropy: lowest entropy of the predicted distribution first.
- threshold: commit every masked position whose confidence exceeds `sampler.threshold`,
  at least one per pass and enough to finish within `sampler.steps` passes per block
  (parallel decoding; confident models need far fewer passes).

How many commit per pass follows `sampler.schedule` (`schedules.masked_counts`). With
`sampler.block_length`, the positions to fill are split into blocks of that many, decoded
left to right (semi-autoregressive); the `steps` are shared out across the blocks (each gets
at least one pass).

Reproducibility: sample j of every prompt uses its own `torch.Generator` seeded with
`seed + j`; every random draw of that sequence comes from it, and the model sees each
sequence with only its own padding, so a batch gives the same samples as one-by-one runs.
Special tokens are never sampled.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shared.contracts.specs import SamplerSpec

from .modeling import encode, lm_head
from .sampling import log_normalizer, sample_tokens
from .schedules import get_schedule, masked_counts


@dataclass
class TrajectoryStep:
    tokens: list[int]  # (T,) ids after this pass; the mask id where still masked
    confidences: list[
        float
    ]  # (T,) model confidence of the token at each position, 0.0 where masked or given


@dataclass
class Sample:
    prompt: str  # the prompt, or the template for infilling
    text: str  # prompt + completion decoded, no special tokens
    completion: str  # generated text; for infilling the filled spans joined by " | "
    token_ids: list[int]  # (T,) full sequence incl. special tokens
    given: list[bool]  # (T,) True for positions fixed from the prompt/template (and specials)
    seed: int  # the seed of this sample's generator
    forward_passes: int  # encoder passes this sample took part in
    committed_at: list[
        int
    ]  # (T,) the pass (0-based) that last committed each position; -1 for given
    trajectory: list[TrajectoryStep] | None  # one step per pass when recorded


# ---------------------------------------------------------------------------- strategies


class Strategy(ABC):
    """Decides, after each pass, which masked positions of the current block to commit."""

    name: str
    repredicts = False  # True: every position of the block is re-predicted each pass

    def scores(self, logits: torch.Tensor, tokens: torch.Tensor, probs: torch.Tensor):
        """(N,) float64, higher commits first. logits (N, V), tokens (N,), probs (N,)."""
        return probs

    @abstractmethod
    def num_to_commit(
        self,
        scores: torch.Tensor,
        masked_left: torch.Tensor,
        keep: torch.Tensor,
        passes_left: torch.Tensor,
        sampler: SamplerSpec,
    ) -> torch.Tensor:
        """(A,) positions to commit per row.

        scores: (A, T) with -inf off the candidates; masked_left: (A,) masked in the block;
        keep: (A,) the schedule's count to leave masked; passes_left: (A,) this pass included.
        """


class ScheduledStrategy(Strategy):
    """Commits `masked_left - keep` of the best-scored positions each pass."""

    def num_to_commit(self, scores, masked_left, keep, passes_left, sampler):
        return masked_left - keep


class ConfidenceStrategy(ScheduledStrategy):
    name = "confidence"


class MarginStrategy(ScheduledStrategy):
    name = "margin"

    def scores(self, logits, tokens, probs):
        top2 = logits.topk(2, dim=-1).values.double()  # (N, 2)
        p = torch.exp(top2 - log_normalizer(logits)[:, None])
        return p[:, 0] - p[:, 1]


class EntropyStrategy(ScheduledStrategy):
    name = "entropy"

    def scores(self, logits, tokens, probs):
        return -_entropy(logits)


class ThresholdStrategy(Strategy):
    name = "threshold"

    def num_to_commit(self, scores, masked_left, keep, passes_left, sampler):
        above = (scores > sampler.threshold).sum(dim=1)  # (A,)
        # ceil(masked / passes left): `steps` is a cap on the passes per block.
        floor = torch.div(masked_left + passes_left - 1, passes_left, rounding_mode="floor")
        return torch.minimum(torch.maximum(above, floor.clamp(min=1)), masked_left)


class RandomStrategy(Strategy):
    """Handled by the loop: re-predict the whole block, then re-mask a random subset."""

    name = "random"
    repredicts = True

    def num_to_commit(self, scores, masked_left, keep, passes_left, sampler):
        return masked_left - keep


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        RandomStrategy,
        ConfidenceStrategy,
        MarginStrategy,
        EntropyStrategy,
        ThresholdStrategy,
    )
}


def get_strategy(name: str) -> Strategy:
    """The unmasking strategy registered under `name`; ValueError naming the choices otherwise."""
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}"
        ) from None


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """(N,) float64 entropy (nats) of softmax(logits) for logits (N, V)."""
    out = torch.empty(logits.shape[0], dtype=torch.float64)
    step = max(1, (1 << 22) // max(1, logits.shape[-1]))
    for start in range(0, logits.shape[0], step):
        part = logits[start : start + step].double()
        logp = torch.log_softmax(part, dim=-1)
        out[start : start + step] = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(dim=-1)
    return out


# ---------------------------------------------------------------------------- inputs


@dataclass
class _Row:
    prompt: str
    ids: list[int]  # (T,)
    given: list[bool]  # (T,)
    seed: int


_TEMPLATE_MASK = r"\[MASK(?::(\d+))?\]"


def _specials(tokenizer) -> tuple[int, int, int]:
    """(start, end, mask) ids from the tokenizer: CLS/SEP for BERT, <s>/</s> for RoBERTa."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer needs a CLS/BOS, a SEP/EOS and a mask token")
    return start, end, tokenizer.mask_token_id


def _max_positions(model) -> int:
    """Longest sequence the model's position embeddings allow."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or 10**9
    if "roberta" in getattr(config, "model_type", "") or "camembert" in config.model_type:
        limit -= (config.pad_token_id or 0) + 1  # RoBERTa numbers positions from pad + 1
    return limit


def _prompt_row(tokenizer, prompt: str, length: int, seed: int) -> _Row:
    start, end, mask = _specials(tokenizer)
    prefix = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    ids = [start, *prefix, *[mask] * length, end]
    given = [True] * (1 + len(prefix)) + [False] * length + [True]
    return _Row(prompt, ids, given, seed)


def _template_row(tokenizer, template: str, seed: int) -> _Row:
    start, end, mask = _specials(tokenizer)
    pattern = _TEMPLATE_MASK
    if tokenizer.mask_token and tokenizer.mask_token != "[MASK]":
        pattern += "|" + re.escape(tokenizer.mask_token)
    ids, given = [start], [True]
    pieces = re.split(f"({pattern})", template)
    # re.split with a group yields text, whole match, count group, text, ...
    i = 0
    while i < len(pieces):
        text = pieces[i]
        follows_mask = i + 1 < len(pieces)
        if text and follows_mask:
            text = text.rstrip()  # the masked token carries its own leading space (BPE)
        if text:
            piece = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            given += [True] * len(piece)
        if follows_mask:
            n = int(pieces[i + 2]) if pieces[i + 2] else 1
            ids += [mask] * n
            given += [False] * n
            i += 3
        else:
            i += 1
    ids.append(end)
    given.append(True)
    if all(given):
        raise ValueError(f"template {template!r} has no [MASK] or [MASK:n] to fill")
    return _Row(template, ids, given, seed)


# ---------------------------------------------------------------------------- public API


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    sampler: SamplerSpec,
    *,
    length: int = 64,
    num_samples: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    record_trajectory: bool = False,
) -> list[Sample]:
    """Generate `length` tokens after each prompt by iterative unmasking.

    Sample j (0-based) of every prompt uses seed `seed + j`. Returns len(prompts) *
    num_samples samples, prompt-major: [p0 s0, p0 s1, ..., p1 s0, ...]. `batch_size`
    sequences share each model call; results do not depend on it.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    rows = [
        _prompt_row(tokenizer, prompt, length, seed + j)
        for prompt in prompts
        for j in range(num_samples)
    ]
    return _run(model, tokenizer, rows, sampler, batch_size, record_trajectory)


def infill(
    model,
    tokenizer,
    templates: Sequence[str],
    sampler: SamplerSpec,
    *,
    num_samples: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    record_trajectory: bool = False,
) -> list[Sample]:
    """Fill the `[MASK]` (one token) and `[MASK:n]` (n tokens) slots of each template.

    Known text never changes. Seeds and ordering as in `generate`; `sampler.block_length`
    splits the slots, in reading order, into blocks of that many tokens.
    """
    rows = [
        _template_row(tokenizer, template, seed + j)
        for template in templates
        for j in range(num_samples)
    ]
    return _run(model, tokenizer, rows, sampler, batch_size, record_trajectory)


# ---------------------------------------------------------------------------- the loop


def _block_steps(n: int, sampler: SamplerSpec, repredicts: bool) -> list[tuple[int, int]]:
    """[(positions, passes)] per block for n positions to fill."""
    size = sampler.block_length or max(n, 1)
    sizes = [min(size, n - start) for start in range(0, n, size)]
    base, extra = divmod(sampler.steps, len(sizes)) if sizes else (0, 0)
    plan = []
    for b, positions in enumerate(sizes):
        passes = max(1, base + (b < extra))
        if not repredicts:
            passes = min(passes, positions)  # a pass that commits nothing is wasted
        plan.append((positions, passes))
    return plan


def _run(model, tokenizer, rows, sampler, batch_size, record_trajectory) -> list[Sample]:
    limit = _max_positions(model)
    for row in rows:
        if len(row.ids) > limit:
            raise ValueError(
                f"sequence of {len(row.ids)} tokens (prompt + slots + specials) exceeds the "
                f"model's {limit} positions"
            )
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out: list[Sample] = []
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                out += _denoise(model, tokenizer, chunk, sampler, record_trajectory)
            return out
    finally:
        model.train(was_training)


def _denoise(model, tokenizer, rows: list[_Row], sampler: SamplerSpec, record: bool):
    strategy = get_strategy(sampler.strategy)
    schedule = get_schedule(sampler.schedule)
    head = lm_head(model)
    device = next(model.parameters()).device
    mask_id = tokenizer.mask_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else mask_id
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    B = len(rows)
    lengths = torch.tensor([len(r.ids) for r in rows])  # (B,)
    T = int(lengths.max())

    ids = torch.full((B, T), pad_id, dtype=torch.long)  # (B, T), right padded
    attention = torch.zeros((B, T), dtype=torch.long)
    given = torch.ones((B, T), dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, : len(row.ids)] = torch.tensor(row.ids)
        attention[b, : len(row.ids)] = 1
        given[b, : len(row.ids)] = torch.tensor(row.given)
    todo = ~given  # (B, T) positions to fill
    masked = todo.clone()  # (B, T) still masked
    ids[todo] = mask_id
    # Block of each position to fill: its rank among the row's slots // block length.
    rank = todo.long().cumsum(dim=1) - 1
    block_id = torch.where(todo, rank // (sampler.block_length or T), -1)  # (B, T)
    committed_at = torch.full((B, T), -1, dtype=torch.long)
    confidence = torch.zeros((B, T), dtype=torch.float64)  # 0 where masked or given
    passes = [0] * B
    trajectories: list[list[TrajectoryStep]] = [[] for _ in rows]
    generators = [torch.Generator().manual_seed(r.seed) for r in rows]

    plans = [_block_steps(int(n), sampler, strategy.repredicts) for n in todo.sum(dim=1)]
    keeps = [[masked_counts(schedule, n, s) for n, s in plan] for plan in plans]
    block = [0] * B  # current block per row
    step_in_block = [0] * B

    pass_index = 0
    while True:
        active = [b for b in range(B) if block[b] < len(plans[b])]
        if not active:
            break
        rows_t = torch.tensor(active)  # (A,)
        width = int(lengths[rows_t].max())
        cur = torch.tensor([block[b] for b in active])  # (A,)
        in_block = block_id[rows_t, :width] == cur[:, None]  # (A, W)
        masked_a = masked[rows_t, :width]
        need = in_block if strategy.repredicts else in_block & masked_a  # (A, W)
        owner = need.nonzero()[:, 0]  # (N,) row of each needed position, row-major

        # The model runs where its weights are (a GPU, say); the bookkeeping and the
        # per-row seeded sampling stay on the CPU, so a sample does not depend on the device.
        hidden = encode(
            model, ids[rows_t, :width].to(device), attention[rows_t, :width].to(device)
        )  # (A, W, H)
        logits = head(hidden[need.to(device)]).float().cpu()  # (N, V)
        logits.index_fill_(1, special, float("-inf"))
        tokens, probs = sample_tokens(
            logits,
            sampler.sampling,
            temperature=sampler.temperature,
            top_k=sampler.top_k,
            top_p=sampler.top_p,
            generators=[generators[b] for b in active],
            owner=owner,
            # Random re-masking ranks nothing: confidences only for a recorded trajectory.
            with_probs=record or not strategy.repredicts,
        )
        new_tokens = torch.zeros_like(need, dtype=torch.long)  # (A, W)
        new_tokens[need] = tokens
        new_conf = torch.zeros_like(need, dtype=torch.float64)
        if probs is not None:
            new_conf[need] = probs

        keep = torch.tensor([keeps[b][block[b]][step_in_block[b]] for b in active])  # (A,)
        if strategy.repredicts:
            commit = _random_remask(in_block, keep, [generators[b] for b in active])
            uncommit = in_block & ~commit  # re-masked this pass
        else:
            score = torch.full(need.shape, float("-inf"), dtype=torch.float64)  # (A, W)
            score[need] = strategy.scores(logits, tokens, probs)
            passes_left = torch.tensor([plans[b][block[b]][1] - step_in_block[b] for b in active])
            count = strategy.num_to_commit(
                score, masked_a.logical_and(in_block).sum(dim=1), keep, passes_left, sampler
            )
            order = torch.argsort(score, dim=1, descending=True, stable=True)
            ranks = torch.empty_like(order).scatter_(1, order, torch.arange(width).expand_as(order))
            commit = need & (ranks < count[:, None])  # (A, W)
            uncommit = torch.zeros_like(commit)

        # Write back into the (B, T) state of the active rows.
        sub_ids = ids[rows_t, :width]
        sub_ids = torch.where(commit, new_tokens, sub_ids).masked_fill(uncommit, mask_id)
        ids[rows_t, :width] = sub_ids
        sub_masked = (masked_a & ~commit) | uncommit
        masked[rows_t, :width] = sub_masked
        sub_conf = confidence[rows_t, :width]
        confidence[rows_t, :width] = torch.where(commit, new_conf, sub_conf).masked_fill(
            uncommit, 0.0
        )
        sub_at = committed_at[rows_t, :width]
        committed_at[rows_t, :width] = torch.where(commit, pass_index, sub_at)

        left_in_block = (sub_masked & in_block).sum(dim=1).tolist()
        for a, b in enumerate(active):
            passes[b] += 1
            step_in_block[b] += 1
            if record:
                n = int(lengths[b])
                trajectories[b].append(
                    TrajectoryStep(ids[b, :n].tolist(), confidence[b, :n].tolist())
                )
            block_done = step_in_block[b] >= plans[b][block[b]][1]
            if not strategy.repredicts:
                block_done = left_in_block[a] == 0
            if block_done:
                block[b] += 1
                step_in_block[b] = 0
        pass_index += 1

    return [
        _to_sample(
            tokenizer,
            row,
            ids[b, : len(row.ids)],
            committed_at[b, : len(row.ids)],
            passes[b],
            trajectories[b] if record else None,
        )
        for b, row in enumerate(rows)
    ]


def _random_remask(
    in_block: torch.Tensor, keep: torch.Tensor, generators: list[torch.Generator]
) -> torch.Tensor:
    """(A, W) bool: block positions that stay filled; `keep[a]` random ones are re-masked."""
    commit = in_block.clone()
    for a, g in enumerate(generators):
        k = int(keep[a])
        if k == 0:
            continue
        positions = in_block[a].nonzero().squeeze(-1)  # (n,)
        noise = torch.rand(len(positions), generator=g, dtype=torch.float64)
        commit[a, positions[noise.argsort()[:k]]] = False
    return commit


def _to_sample(tokenizer, row: _Row, ids, committed_at, passes, trajectory) -> Sample:
    token_ids = ids.tolist()
    given = row.given
    spans, current = [], []
    for token, fixed in zip(token_ids, given, strict=True):
        if not fixed:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    completion = " | ".join(
        tokenizer.decode(span, skip_special_tokens=True).strip() for span in spans
    )
    return Sample(
        prompt=row.prompt,
        text=tokenizer.decode(token_ids, skip_special_tokens=True),
        completion=completion,
        token_ids=token_ids,
        given=list(given),
        seed=row.seed,
        forward_passes=passes,
        committed_at=committed_at.tolist(),
        trajectory=trajectory,
    )


__all__ = [
    "STRATEGIES",
    "Sample",
    "Strategy",
    "TrajectoryStep",
    "generate",
    "get_strategy",
    "infill",
]
