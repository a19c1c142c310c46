"""One readable Accelerate training loop for masked diffusion LMs.

    spec -> corpus -> model + tokenizer -> packed blocks
    for each step: pick blocks (by step number) -> the objective's inputs (masked at a
    drawn ratio) -> its loss (on masked tokens only) -> backward -> clip -> AdamW step
    every N steps: log, evaluate CE(t) per mask ratio, checkpoint

The objective (`objectives`) owns what is specific to masked diffusion: how a batch of
blocks becomes inputs and a loss; this loop owns data order, ranks, accumulation, state.

Exact resume: the data order and the masks of step k depend only on (seed, k), and
Accelerate's `save_state` stores the model, optimiser and RNG states, so a run stopped at
step k and resumed continues the uninterrupted loss curve. Callbacks receive progress,
metrics and checkpoints and may ask the loop to stop, which is how a worker streams results
to a database and cancels a run.

With `spec.objective == "ar"` the same loop trains the same model left to right (an AR
baseline, `causal.CausalObjective`): the exact perplexity instead of the bound, and the
same data order, optimiser, schedule, checkpoints and resume.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch import nn

from shared.contracts.specs import TrainSpec

from . import data as data_lib
from .causal import causal_from_masked, evaluate_causal
from .evaluation import RatioResult, bound_of, evaluate_ratios, unigram_entropy
from .masking import IGNORE_INDEX, seeded_generator, special_ids
from .modeling import build_scratch, init_output_bias, load_pretrained, save_checkpoint
from .objectives import Objective, objective_for
from .optim import lr_factor, param_groups, resolve_mixed_precision

STATE_DIR = "state"  # latest resumable training state (Accelerate format)
OLD_STATE_DIR = ".old-state"  # the previous state while a new one is swapped in
STATE_FILE = "trainer_state.json"
RESULTS_FILE = "results.json"
STOP_REASONS = (None, "time_budget", "callback")  # by strength: the ranks agree on the max


class Callback(Protocol):
    """Hooks the loop calls. Implement any subset by subclassing `BaseCallback`."""

    def on_train_begin(self, info: dict[str, Any]) -> None: ...
    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_evaluate(self, step: int, results: list[RatioResult], bound: dict) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...
    def should_stop(self) -> bool: ...
    def on_train_end(self, summary: dict[str, Any]) -> None: ...


class BaseCallback:
    def on_train_begin(self, info: dict[str, Any]) -> None:
        pass

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_evaluate(self, step: int, results: list[RatioResult], bound: dict) -> None:
        pass

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def on_train_end(self, summary: dict[str, Any]) -> None:
        pass


@dataclass
class TrainerState:
    """What, beside Accelerate's state, a resumed run needs: counters only."""

    step: int = 0  # optimiser steps done
    tokens_seen: int = 0
    elapsed_s: float = 0.0  # training wall time over all attempts
    last_checkpoint: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # evaluation summaries


@dataclass
class Prepared:
    model: nn.Module
    tokenizer: Any
    train_blocks: torch.Tensor  # (M, T)
    val_blocks: torch.Tensor  # (M_val, T)


def prepare_data_and_model(spec: TrainSpec) -> Prepared:
    """Load the corpus, the model (or a fresh one with a tokenizer trained on the corpus), pack."""
    corpus = data_lib.corpus_for(spec)
    if spec.model == "scratch":
        torch.manual_seed(spec.seed)
        model, tokenizer = build_scratch(spec.scratch, corpus.train, spec.seq_len)
    else:
        model, tokenizer = load_pretrained(spec.model)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and spec.seq_len > limit:
            raise ValueError(f"seq_len {spec.seq_len} exceeds the model's limit of {limit}")
    train = data_lib.pack(corpus.train, tokenizer, spec.seq_len)
    val = data_lib.pack(corpus.validation, tokenizer, spec.seq_len)
    fresh = spec.model == "scratch" or getattr(model, "fresh_head", False)
    if fresh and spec.init_output_bias:
        init_output_bias(model, train)
    if spec.objective == "ar":
        model = causal_from_masked(model)  # the same weights, attending left to right
    return Prepared(model, tokenizer, train, val)


class Trainer:
    """Runs one `TrainSpec` into `output_dir`, resuming from its saved state if present."""

    def __init__(
        self,
        spec: TrainSpec,
        output_dir: str | Path,
        callbacks: Sequence[Callback] = (),
        prepared: Prepared | None = None,
    ) -> None:
        self.spec = spec
        self.output_dir = Path(output_dir)
        self.callbacks = list(callbacks)
        # Accelerate keeps precision in a process-wide singleton; a worker (or a test) that
        # trains several specs in one process must clear it. The process group survives.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            mixed_precision=resolve_mixed_precision(spec.mixed_precision),
            log_with="tensorboard" if spec.tensorboard else None,
            project_dir=str(self.output_dir),
        )
        set_seed(spec.seed)
        if prepared is None:
            # Rank 0 first: it fills the corpus and tokenizer caches the others then read.
            with self.accelerator.main_process_first():
                prepared = prepare_data_and_model(spec)
        self.prepared = prepared
        self.tokenizer = self.prepared.tokenizer
        self._check_same_data()
        self.special_ids = special_ids(self.tokenizer)
        self.sampler = data_lib.BlockSampler(
            len(self.prepared.train_blocks), spec.batch_size, spec.seed
        )
        model = self.prepared.model
        # fused: one kernel over all parameters; the per-tensor loop took ~2.5x longer on CPU.
        optimizer = torch.optim.AdamW(
            param_groups(model, spec), betas=(0.9, 0.98), eps=1e-6, fused=True
        )
        objective = objective_for(spec, model, self.special_ids, self.tokenizer.mask_token_id)
        self.objective, self.optimizer = self.accelerator.prepare(objective, optimizer)
        self.state = TrainerState()

    def _check_same_data(self) -> None:
        """With several processes, fail unless every rank packed the same blocks: each rank
        trains its tokenizer and packs the corpus itself, and a difference would train the
        ranks on different token ids without any other error."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        blocks = self.prepared.train_blocks  # (M, T)
        weights = torch.arange(1, blocks.shape[1] + 1, dtype=torch.float64)  # (T,)
        mine = torch.tensor(
            [len(blocks), float((blocks.double() * weights).sum()), len(self.tokenizer)],
            dtype=torch.float64,
            device=acc.device,
        )  # (3,)
        every = acc.gather(mine.unsqueeze(0))  # (P, 3)
        if not bool((every == every[0]).all()):
            raise RuntimeError(
                "the training processes packed different data (blocks, checksum, vocabulary "
                f"per rank: {every.tolist()}); the corpus or tokenizer is not deterministic"
            )

    # ----------------------------------------------------------------- state on disk
    def _load_state_if_any(self) -> None:
        state_dir = self.output_dir / STATE_DIR
        if not (state_dir / STATE_FILE).is_file():
            state_dir = self.output_dir / OLD_STATE_DIR  # a crash during the last swap
        if not (state_dir / STATE_FILE).is_file():
            return
        self.accelerator.load_state(str(state_dir))
        self.state = TrainerState(**json.loads((state_dir / STATE_FILE).read_text()))

    def save(self) -> Path:
        """Write a loadable checkpoint and the resumable state; both atomically."""
        step = self.state.step
        ckpt = self.output_dir / f"checkpoint-{step}"
        if self.accelerator.is_main_process:
            tmp = self.output_dir / f".tmp-checkpoint-{step}"
            shutil.rmtree(tmp, ignore_errors=True)
            save_checkpoint(
                self._objective.model,
                self.tokenizer,
                tmp,
                self.spec.model_dump(mode="json"),
                {"step": step, "tokens_seen": self.state.tokens_seen},
            )
            shutil.rmtree(ckpt, ignore_errors=True)
            tmp.rename(ckpt)
            self.state.last_checkpoint = str(ckpt)
        tmp_state = self.output_dir / ".tmp-state"
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp_state, ignore_errors=True)
        self.accelerator.wait_for_everyone()  # every rank writes its RNG state in there
        # Pickle format: the tied embedding/decoder weights would trip safetensors' shared
        # tensor check, and this state is only ever read back by us.
        self.accelerator.save_state(str(tmp_state), safe_serialization=False)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            (tmp_state / STATE_FILE).write_text(json.dumps(asdict(self.state)))
            # Swap by renames so that a crash at any point leaves one complete state.
            final, old = self.output_dir / STATE_DIR, self.output_dir / OLD_STATE_DIR
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                final.rename(old)
            tmp_state.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        for cb in self.callbacks:
            cb.on_checkpoint(step, ckpt)
        return ckpt

    # ----------------------------------------------------------------- one step
    @property
    def _objective(self) -> Objective:
        """The objective itself, outside any wrapper Accelerate put around it."""
        return self.accelerator.unwrap_model(self.objective)

    def _micro_batch(self, k: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Global micro-batch k, built with a generator seeded by k: this process's rows (on
        its device) and the batch's metrics.

        Every rank builds the whole micro-batch (cheap integer ops) and keeps its rows, so N
        processes train on exactly the batches one process would.
        """
        acc = self.accelerator
        ids = self.prepared.train_blocks[self.sampler.batch(k)]  # (B, T)
        rows, metrics = self._objective.inputs(ids, seeded_generator(self.spec.seed, k))
        mine = slice(acc.process_index, None, acc.num_processes)
        return {name: value[mine].to(acc.device) for name, value in rows.items()}, metrics

    def _progress(self) -> float:
        p = self.state.step / self.spec.max_steps
        if self.spec.minutes:
            p = max(p, self.state.elapsed_s / (self.spec.minutes * 60))
        return p

    def train_step(self) -> dict[str, float]:
        spec, acc = self.spec, self.accelerator
        factor = lr_factor(spec, self.state.step, self._progress())
        for group in self.optimizer.param_groups:  # head and body (older states: no "head")
            group["lr"] = group["base_lr"] * lr_factor(
                spec, self.state.step, self._progress(), head=group.get("head", False)
            )
        total, scored = 0.0, 0
        averages: dict[str, float] = {}
        for micro in range(spec.grad_accum):
            batch, metrics = self._micro_batch(self.state.step * spec.grad_accum + micro)
            for name, value in metrics.items():
                averages[name] = averages.get(name, 0.0) + value / spec.grad_accum
            with acc.autocast():
                loss = self.objective(**batch)  # this rank's share of the batch's loss
            # DDP averages gradients over the P ranks; the batch's gradient is their sum.
            acc.backward(loss * acc.num_processes / spec.grad_accum)
            total += loss.item() / spec.grad_accum
            scored += int((batch["labels"] != IGNORE_INDEX).sum())
        grad_norm = acc.clip_grad_norm_(self.objective.parameters(), spec.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        tokens = spec.batch_size * spec.grad_accum * spec.seq_len
        self.state.tokens_seen += tokens
        return {
            "loss": total,
            **averages,
            "lr": spec.lr * factor,
            "grad_norm": float(grad_norm),
            "masked_tokens": scored,
        }

    def _across_ranks(self, metrics: dict[str, float]) -> dict[str, float]:
        """This step's metrics over the whole batch: each rank holds its share of the loss
        (weights are normalised over the whole batch) and of the masked tokens."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return metrics
        local = torch.tensor(
            [metrics["loss"], metrics["masked_tokens"]], dtype=torch.float64, device=acc.device
        )  # (2,)
        loss, masked = acc.reduce(local, "sum").tolist()
        return {**metrics, "loss": loss, "masked_tokens": int(masked)}

    def evaluate(self) -> tuple[list[RatioResult], dict[str, float]]:
        """Diffusion: CE(t) on the eval grid and its ELBO bound. AR: the exact NLL per token
        on the same blocks and tokens, in the bound's place (with `exact: True`), no grid."""
        spec = self.spec
        if spec.objective == "ar":
            return self._evaluate_causal()
        with self.accelerator.autocast():
            results = evaluate_ratios(
                self._objective.model,
                self.prepared.val_blocks,
                self.tokenizer,
                spec.eval_ratios,
                batch_size=spec.batch_size,
                max_batches=spec.eval_batches,
                seed=spec.seed,
                prefix_length=spec.masking.prefix_length,
            )
        bound = asdict(bound_of(results))
        self.state.history.append(
            json_safe({"step": self.state.step, **bound, "grid": [asdict(r) for r in results]})
        )
        for cb in self.callbacks:
            cb.on_evaluate(self.state.step, results, bound)
        return results, bound

    def _evaluate_causal(self) -> tuple[list[RatioResult], dict[str, float]]:
        with self.accelerator.autocast():
            exact = evaluate_causal(
                self._objective.model,
                self.prepared.val_blocks,
                self.tokenizer,
                batch_size=self.spec.batch_size,
                max_batches=self.spec.eval_batches,
                prefix_length=self.spec.masking.prefix_length,
            )
        bound = {**asdict(exact), "exact": True}
        self.state.history.append(json_safe({"step": self.state.step, **bound, "grid": []}))
        for cb in self.callbacks:
            cb.on_evaluate(self.state.step, [], bound)
        return [], bound

    # ----------------------------------------------------------------- the loop
    def _stop_reason(self) -> str | None:
        """Why to stop before the next step, if at all; the same answer on every rank.

        A rank alone may be asked to stop (rank 0 reads the cancel flag, any rank may get
        SIGTERM): the ranks take the strongest request among them, so all stop at the same
        step and save together instead of leaving the others waiting in a collective.
        """
        code = 0
        if self.spec.minutes and self.state.elapsed_s >= self.spec.minutes * 60:
            code = 1
        if any(cb.should_stop() for cb in self.callbacks):
            code = 2
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([code], device=self.accelerator.device)  # (1,)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            code = int(flag.item())
        return STOP_REASONS[code]

    def train(self) -> dict[str, Any]:
        """Train until max_steps, the time budget, or a callback's stop. Returns the summary."""
        spec = self.spec
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._load_state_if_any()
        start_step = self.state.step
        if spec.tensorboard:
            self.accelerator.init_trackers("text-diffusion", config=_flat(spec.model_dump()))
        info = {
            "start_step": start_step,
            "max_steps": spec.max_steps,
            "train_blocks": len(self.prepared.train_blocks),
            "val_blocks": len(self.prepared.val_blocks),
            "mixed_precision": self.accelerator.mixed_precision,
            "device": str(self.accelerator.device),
            "num_processes": self.accelerator.num_processes,
        }
        for cb in self.callbacks:
            cb.on_train_begin(info)
        self.objective.train()
        stopped_by = "max_steps"
        window_start, window_tokens = time.perf_counter(), 0
        while self.state.step < spec.max_steps:
            reason = self._stop_reason()
            if reason:
                stopped_by = reason
                break
            t0 = time.perf_counter()
            metrics = self.train_step()
            self.state.elapsed_s += time.perf_counter() - t0
            window_tokens += spec.batch_size * spec.grad_accum * spec.seq_len
            step = self.state.step
            if step % spec.log_every == 0 or step == spec.max_steps:
                metrics = self._across_ranks(metrics)
                now = time.perf_counter()
                metrics["tokens_per_s"] = window_tokens / max(now - window_start, 1e-9)
                metrics["tokens_seen"] = self.state.tokens_seen
                metrics["elapsed_s"] = self.state.elapsed_s
                metrics["epoch"] = self.sampler.epoch_of(step * spec.grad_accum)
                window_start, window_tokens = now, 0
                for cb in self.callbacks:
                    cb.on_log(step, metrics)
                if spec.tensorboard:
                    self.accelerator.log(metrics, step=step)
            if step % spec.eval_every == 0 and step != spec.max_steps:
                self.evaluate()
                self.objective.train()
                window_start = time.perf_counter()  # throughput excludes evaluation
            if step % spec.save_every == 0 and step != spec.max_steps:
                self.save()
                window_start = time.perf_counter()
        results, bound = self.evaluate()
        checkpoint = self.save()
        summary = self._summary(results, bound, checkpoint, stopped_by, start_step)
        if self.accelerator.is_main_process:
            (self.output_dir / RESULTS_FILE).write_text(json.dumps(json_safe(summary), indent=2))
        if spec.tensorboard:
            self.accelerator.end_training()
        for cb in self.callbacks:
            cb.on_train_end(summary)
        return summary

    def _summary(self, results, bound, checkpoint, stopped_by, start_step) -> dict[str, Any]:
        s = self.state
        return {
            "spec": self.spec.model_dump(mode="json"),
            "objective": self.spec.objective,
            "steps": s.step,
            "resumed_from_step": start_step,
            "stopped_by": stopped_by,
            "tokens_seen": s.tokens_seen,
            "train_seconds": round(s.elapsed_s, 2),
            "tokens_per_s": round(s.tokens_seen / s.elapsed_s, 1) if s.elapsed_s else None,
            "checkpoint": str(checkpoint),
            "eval": [asdict(r) for r in results],
            "bound": bound,
            "unigram_entropy": unigram_entropy(self.prepared.val_blocks, self.special_ids.tolist()),
            "history": s.history,
            "mixed_precision": self.accelerator.mixed_precision,
        }


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities (an empty ratio, an overflowing bound) by None: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        elif isinstance(v, list | tuple):
            out[key] = ",".join(map(str, v))
        else:
            out[key] = v
    return out


def train(
    spec: TrainSpec, output_dir: str | Path, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """Train `spec` into `output_dir` (resuming if it holds a saved state)."""
    return Trainer(spec, output_dir, callbacks).train()
