"""Optimiser settings: mixed precision, the learning-rate schedule and AdamW's groups."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from shared.contracts.specs import TrainSpec

from .modeling import lm_head


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic (AVX512-BF16 or AMX). Elsewhere oneDNN emulates bf16,
    which trains several times slower than fp32 (BENCHMARKS.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_mixed_precision(setting: str) -> str:
    """'auto' -> bf16 where the device computes in bf16 natively (recent CUDA GPUs, CPUs with
    AVX512-BF16/AMX), fp16 on older GPUs, else full precision."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "no"


def lr_factor(spec: TrainSpec, step: int, progress: float, head: bool = False) -> float:
    """Linear warm-up over steps, then decay over progress in [0, 1] down to 10%.

    With `head_warmup_steps` H the body (head=False) is held still (factor 0) for the first
    H steps and its warm-up runs over steps H .. H + warmup_steps; the head's starts at 0.
    """
    if not head:
        if step < spec.head_warmup_steps:
            return 0.0
        step -= spec.head_warmup_steps
    warm = min(1.0, (step + 1) / spec.warmup_steps) if spec.warmup_steps else 1.0
    p = min(max(progress, 0.0), 1.0)
    if spec.lr_decay == "linear":
        decay = 1.0 - 0.9 * p
    elif spec.lr_decay == "cosine":
        decay = 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        decay = 1.0
    return warm * decay


def param_groups(model: nn.Module, spec: TrainSpec) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases and norms; the MLM head at `head_lr`. Each group
    says whether it is the head's (`head`), for `lr_factor`.

    The head's output matrix is tied to the word embeddings, which belong to the body.
    """
    head_ids = {id(p) for p in lm_head(model).parameters()}
    embed_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = id(p) in head_ids and id(p) not in embed_ids
        no_decay = p.ndim < 2 or "norm" in name.lower()
        groups.setdefault((is_head, no_decay), []).append(p)
    out = []
    for (is_head, no_decay), params in groups.items():
        lr = (spec.head_lr or spec.lr) if is_head else spec.lr
        out.append(
            {
                "params": params,
                "lr": lr,
                "base_lr": lr,
                "head": is_head,
                "weight_decay": 0.0 if no_decay else spec.weight_decay,
            }
        )
    return out
