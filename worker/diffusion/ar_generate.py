"""Token-by-token generation for AR checkpoints, with the diffusion sampler's options.

`generate_causal` continues each prompt for `length` tokens, one forward pass per token
over a key/value cache, drawing each token with `sampling.sample_tokens` (greedy, top-k,
nucleus; temperature), and returns the same `Sample` records as diffusion generation, so
AR sample sets sit beside diffusion ones. Only `sampling`, `temperature`, `top_k` and
`top_p` of the `SamplerSpec` apply: an AR model has no steps, schedule or unmasking
strategy (forward_passes is always `length`).

Reproducibility as in diffusion generation: sample j of every prompt draws from its own
generator seeded `seed + j`, and rows are batched only with rows of the same prompt length
(no padding), so a batch gives the same samples as one-by-one runs. Special tokens are
never sampled. The sequence is laid out as the diffusion one: `[CLS] prompt completion
[SEP]`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from shared.contracts.grid import SamplerSpec

from .causal import is_causal_checkpoint, load_causal_checkpoint, max_positions
from .generate import Sample, TrajectoryStep, generate
from .modeling import load_checkpoint, load_pretrained
from .sampling import sample_tokens


def _start_end(tokenizer) -> tuple[int, int]:
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None:
        raise ValueError("the tokenizer needs a CLS/BOS and a SEP/EOS token")
    return start, end


def load_for_generation(checkpoint: str | Path) -> tuple[Any, Any, Callable[..., list[Sample]]]:
    """(model, tokenizer, generate function) for a checkpoint directory or a model name.

    An AR checkpoint (`causal.is_causal_checkpoint`) gets `generate_causal`, anything else
    `generate.generate` (iterative unmasking); both take the same arguments and return
    the same `Sample`s, so a caller needs no branch of its own.
    """
    if Path(checkpoint).is_dir():
        if is_causal_checkpoint(checkpoint):
            model, tokenizer, _ = load_causal_checkpoint(checkpoint)
            return model, tokenizer, generate_causal
        model, tokenizer, _ = load_checkpoint(checkpoint)
    else:
        model, tokenizer = load_pretrained(str(checkpoint))
    return model, tokenizer, generate


def generate_causal(
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
    """Continue each prompt by `length` tokens, left to right.

    Same arguments and result order as `generate.generate` (prompt-major, sample j seeded
    `seed + j`). With `record_trajectory`, pass k's step shows the sequence after k + 1
    tokens, the rest still the mask id (0.0 confidence), as a diffusion trajectory does.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    start, end = _start_end(tokenizer)
    rows = []
    for prompt in prompts:
        prefix = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        ids = [start, *prefix]
        if len(ids) + length + 1 > max_positions(model):
            raise ValueError(
                f"sequence of {len(ids) + length + 1} tokens (prompt + length + specials) "
                f"exceeds the model's {max_positions(model)} positions"
            )
        rows += [(prompt, ids, seed + j) for j in range(num_samples)]
    out: list[Sample | None] = [None] * len(rows)
    by_length: dict[int, list[int]] = {}
    for i, (_, ids, _) in enumerate(rows):
        by_length.setdefault(len(ids), []).append(i)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for members in by_length.values():
                for s in range(0, len(members), batch_size):
                    chunk = members[s : s + batch_size]
                    batch = [rows[i] for i in chunk]
                    samples = _decode(
                        model, tokenizer, batch, sampler, length, end, record_trajectory
                    )
                    for i, sample in zip(chunk, samples, strict=True):
                        out[i] = sample
    finally:
        model.train(was_training)
    return [s for s in out if s is not None]


def _decode(model, tokenizer, rows, sampler: SamplerSpec, length: int, end: int, record: bool):
    """Generate for rows of equal prompt length; returns one Sample per row."""
    device = next(model.parameters()).device
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    generators = [torch.Generator().manual_seed(seed) for _, _, seed in rows]
    ids = torch.tensor([r[1] for r in rows], dtype=torch.long)  # (B, P)
    B, P = ids.shape
    probs_out = torch.zeros((B, length), dtype=torch.float64)
    new = torch.empty((B, length), dtype=torch.long)
    # transformers 5 names the key/value cache `cache`; 4.x named it `past_key_values`.
    cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else None
    cache_name = cache_name or "past_key_values"
    cache, step_input = None, ids
    for k in range(length):
        out = model(input_ids=step_input.to(device), use_cache=True, **{cache_name: cache})
        cache = out[cache_name]
        logits = out.logits[:, -1].float().cpu()  # (B, V)
        logits.index_fill_(1, special, float("-inf"))
        tokens, probs = sample_tokens(
            logits,
            sampler.sampling,
            temperature=sampler.temperature,
            top_k=sampler.top_k,
            top_p=sampler.top_p,
            generators=generators,
        )
        new[:, k] = tokens
        probs_out[:, k] = probs
        step_input = tokens[:, None]  # (B, 1)
    full = torch.cat([ids, new, torch.full((B, 1), end, dtype=torch.long)], dim=1)  # (B, T)
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else end
    samples = []
    for b, (prompt, _, seed) in enumerate(rows):
        token_ids = full[b].tolist()
        given = [True] * P + [False] * length + [True]
        committed_at = [-1] * P + list(range(length)) + [-1]
        trajectory = None
        if record:
            trajectory = []
            for k in range(length):
                step = token_ids[: P + k + 1] + [mask_id] * (length - k - 1) + [end]
                conf = [0.0] * P + probs_out[b, : k + 1].tolist() + [0.0] * (length - k)
                trajectory.append(TrajectoryStep(step, conf))
        samples.append(
            Sample(
                prompt=prompt,
                text=tokenizer.decode(token_ids, skip_special_tokens=True),
                completion=tokenizer.decode(new[b].tolist(), skip_special_tokens=True).strip(),
                token_ids=token_ids,
                given=given,
                seed=seed,
                forward_passes=length,
                committed_at=committed_at,
                trajectory=trajectory,
            )
        )
    return samples
