"""Batched iterative denoising: generate from a prompt, or fill templates, by unmasking.

A sequence starts as `[CLS] prompt [MASK]*length [SEP]` (or a template whose `[MASK]`s are
to be filled). Each pass runs the encoder, computes vocabulary logits only at the positions
that need them, samples tokens there (`sampling.sample_tokens`) and decides which positions
keep their token, in one of two modes:

- ranking (confidence, margin, entropy, threshold): the block's masked positions are
  predicted and a `strategies.Strategy` scores them; the best commit, once and for all.
- re-masking (`random`): the whole block is re-predicted every pass, then a random subset
  is masked again (`_random_commit`), so a committed token can change; the block takes all
  of its passes.

`Denoising` holds the batch's state between passes.

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
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shared.contracts.grid import SamplerSpec

from .masking import special_ids
from .modeling import encode, lm_head
from .sampling import sample_tokens
from .schedules import get_schedule, masked_counts
from .strategies import RANDOM, STRATEGIES, Strategy, commit_ranked, get_strategy


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
    """Denoise `rows` together, pass after pass, until every row has filled its blocks."""
    remasking = sampler.strategy == RANDOM
    strategy = None if remasking else get_strategy(sampler.strategy, sampler)
    state = Denoising(rows, tokenizer, sampler, remasking, record)
    head, device = lm_head(model), next(model.parameters()).device
    special = special_ids(tokenizer)
    generators = [torch.Generator().manual_seed(r.seed) for r in rows]
    while len(active := state.active()):  # (A,) rows with a block left
        width = int(state.lengths[active].max())
        block = state.block_id[active, :width] == state.block[active, None]  # (A, W)
        masked = state.masked[active, :width]  # (A, W)
        predicted = block if remasking else block & masked  # (A, W)
        # The model runs where its weights are (a GPU, say); the bookkeeping and the
        # per-row seeded sampling stay on the CPU, so a sample does not depend on the device.
        hidden = encode(
            model, state.ids[active, :width].to(device), state.attention[active, :width].to(device)
        )  # (A, W, H)
        logits = head(hidden[predicted.to(device)]).float().cpu()  # (N, V)
        logits.index_fill_(1, special, float("-inf"))
        row_generators = [generators[b] for b in active.tolist()]
        tokens, probs = sample_tokens(
            logits,
            sampler.sampling,
            temperature=sampler.temperature,
            top_k=sampler.top_k,
            top_p=sampler.top_p,
            generators=row_generators,
            owner=predicted.nonzero()[:, 0],  # (N,) row of each predicted position
            with_probs=record or (strategy is not None and strategy.needs_probs),
        )
        keep = state.keep(active)  # (A,)
        if strategy is None:
            commit = _random_commit(block, keep, row_generators)
            remask = block & ~commit
        else:
            passes_left = state.passes_left(active)
            commit = commit_ranked(strategy, predicted, logits, tokens, probs, keep, passes_left)
            remask = torch.zeros_like(commit)
        state.apply(active, predicted, tokens, probs, commit, remask)
    return [_to_sample(tokenizer, row, state, b) for b, row in enumerate(rows)]


def _random_commit(
    block: torch.Tensor, keep: torch.Tensor, generators: list[torch.Generator]
) -> torch.Tensor:
    """(A, W) bool: the block (A, W) but `keep[a]` of its positions drawn at random with
    row a's generator, which are masked again."""
    commit = block.clone()
    for a, g in enumerate(generators):
        k = int(keep[a])
        if k == 0:
            continue
        positions = block[a].nonzero().squeeze(-1)  # (n,)
        noise = torch.rand(len(positions), generator=g, dtype=torch.float64)
        commit[a, positions[noise.argsort()[:k]]] = False
    return commit


class Denoising:
    """The (B, T) state of a batch being denoised, and where each row stands in its plan.

    A row's positions to fill are split into blocks; block k gets `block_passes[b, k]`
    passes, after pass s of which the schedule leaves `keeps[b, k, s]` of it masked. A row
    is active while it has a block left; `apply` writes one pass's outcome into the rows
    that took part and moves each on to its next block when the block is done: when it has
    no masked position left, or, re-masking, when its passes are spent.
    """

    def __init__(
        self, rows: list[_Row], tokenizer, sampler: SamplerSpec, remasking: bool, record: bool
    ) -> None:
        self.remasking = remasking
        self.mask_id = tokenizer.mask_token_id
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.mask_id
        B = len(rows)
        self.lengths = torch.tensor([len(r.ids) for r in rows])  # (B,)
        T = int(self.lengths.max())
        self.ids = torch.full((B, T), pad_id, dtype=torch.long)  # (B, T), right padded
        self.attention = torch.zeros((B, T), dtype=torch.long)
        given = torch.ones((B, T), dtype=torch.bool)
        for b, row in enumerate(rows):
            self.ids[b, : len(row.ids)] = torch.tensor(row.ids)
            self.attention[b, : len(row.ids)] = 1
            given[b, : len(row.ids)] = torch.tensor(row.given)
        todo = ~given  # (B, T) positions to fill
        self.masked = todo.clone()  # (B, T) still masked
        self.ids[todo] = self.mask_id
        # Block of each position to fill: its rank among the row's slots // block length.
        rank = todo.long().cumsum(dim=1) - 1
        self.block_id = torch.where(todo, rank // (sampler.block_length or T), -1)  # (B, T)
        self.committed_at = torch.full((B, T), -1, dtype=torch.long)  # pass that committed
        self.confidence = torch.zeros((B, T), dtype=torch.float64)  # 0 where masked or given
        self.passes = torch.zeros(B, dtype=torch.long)  # passes each row took part in
        self.block = torch.zeros(B, dtype=torch.long)  # current block of each row
        self.step = torch.zeros(B, dtype=torch.long)  # passes done in the current block
        self.trajectories: list[list[TrajectoryStep]] | None = (
            [[] for _ in rows] if record else None
        )

        schedule = get_schedule(sampler.schedule)
        plans = [_block_plan(int(n), sampler, remasking) for n in todo.sum(dim=1)]
        self.num_blocks = torch.tensor([len(plan) for plan in plans])  # (B,)
        most_blocks = max(map(len, plans), default=0)
        most_passes = max((p for plan in plans for _, p in plan), default=0)
        self.block_passes = torch.zeros((B, most_blocks), dtype=torch.long)  # (B, K)
        self.keeps = torch.zeros((B, most_blocks, most_passes), dtype=torch.long)  # (B, K, S)
        for b, plan in enumerate(plans):
            for k, (positions, passes) in enumerate(plan):
                self.block_passes[b, k] = passes
                self.keeps[b, k, :passes] = torch.tensor(masked_counts(schedule, positions, passes))

    def active(self) -> torch.Tensor:
        """(A,) long: the rows with a block left to fill."""
        return (self.block < self.num_blocks).nonzero().squeeze(-1)

    def keep(self, active: torch.Tensor) -> torch.Tensor:
        """(A,) how many of the current block the schedule leaves masked after this pass."""
        return self.keeps[active, self.block[active], self.step[active]]

    def passes_left(self, active: torch.Tensor) -> torch.Tensor:
        """(A,) passes left for the current block, the coming one included."""
        return self.block_passes[active, self.block[active]] - self.step[active]

    def apply(
        self,
        active: torch.Tensor,
        predicted: torch.Tensor,
        sampled: torch.Tensor,
        probs: torch.Tensor | None,
        commit: torch.Tensor,
        remask: torch.Tensor,
    ) -> None:
        """Commit and re-mask (both (A, W) bool) the positions of one pass over `active`:
        `sampled` (N,) tokens and their `probs` (N,) at the `predicted` (A, W) positions."""
        width = commit.shape[1]
        block = self.block_id[active, :width] == self.block[active, None]  # (A, W)
        tokens = torch.zeros_like(commit, dtype=torch.long)  # (A, W)
        tokens[predicted] = sampled
        confidence = torch.zeros_like(commit, dtype=torch.float64)  # (A, W)
        if probs is not None:
            confidence[predicted] = probs
        ids = torch.where(commit, tokens, self.ids[active, :width])
        self.ids[active, :width] = ids.masked_fill(remask, self.mask_id)
        masked = (self.masked[active, :width] & ~commit) | remask  # (A, W)
        self.masked[active, :width] = masked
        confidence = torch.where(commit, confidence, self.confidence[active, :width])
        self.confidence[active, :width] = confidence.masked_fill(remask, 0.0)
        at = self.committed_at[active, :width]
        self.committed_at[active, :width] = torch.where(commit, self.passes[active, None], at)

        self.passes[active] += 1
        self.step[active] += 1
        # A block is done when nothing in it is masked; re-masking, when its passes are spent.
        left = self.passes_left(active) if self.remasking else (masked & block).sum(dim=1)
        done = left == 0
        self.block[active] += done.long()
        self.step[active] = torch.where(done, 0, self.step[active])
        if self.trajectories is not None:
            for b in active.tolist():
                n = int(self.lengths[b])
                self.trajectories[b].append(
                    TrajectoryStep(self.ids[b, :n].tolist(), self.confidence[b, :n].tolist())
                )


def _block_plan(n: int, sampler: SamplerSpec, remasking: bool) -> list[tuple[int, int]]:
    """[(positions, passes)] per block for n positions to fill: `sampler.steps` shared out
    over the blocks (each gets at least one pass). Ranking, never more passes than
    positions (a pass that commits nothing is wasted); re-masking, every pass re-predicts,
    so all of them count."""
    size = sampler.block_length or max(n, 1)
    sizes = [min(size, n - start) for start in range(0, n, size)]
    base, extra = divmod(sampler.steps, len(sizes)) if sizes else (0, 0)
    return [
        (positions, passes if remasking else min(passes, positions))
        for b, positions in enumerate(sizes)
        for passes in [max(1, base + (b < extra))]
    ]


def _to_sample(tokenizer, row: _Row, state: Denoising, b: int) -> Sample:
    n = len(row.ids)
    token_ids = state.ids[b, :n].tolist()
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
        forward_passes=int(state.passes[b]),
        committed_at=state.committed_at[b, :n].tolist(),
        trajectory=None if state.trajectories is None else state.trajectories[b],
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
