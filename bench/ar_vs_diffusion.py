"""Diffusion vs an AR baseline at equal wall-clock compute, judged four ways.

From the same initialisation (the offline default: packaged all-MiniLM-L6-v2 + a fresh head
whose bias is the log unigram prior, the KJV, 64-token blocks), train the `minilm` preset
as masked diffusion and as AR (`objective: ar`) for the same wall-clock budget, one after
the other (on 2 cores, training both at once halved each one's throughput and left both in
their warm-up), then:

1. likelihood on the same held-out blocks and tokens: the diffusion ELBO bound (ppl <= X)
   and the AR model's exact perplexity (= Y); `bound_ratio` = X / Y;
2. compute: steps, tokens and FLOPs = 6 * N * tokens (N = all parameters, the tied output
   matrix once; the usual 6ND estimate: forward 2ND + backward 4ND);
3. unconditional samples of both models judged by one fixed, independent judge (`--judge`,
   default the packaged SmolLM2-135M; a judge trained on the same budget prefers its own
   kind): judge perplexity of the generated tokens with their diversity beside it (unigram
   entropy, repeated 4-grams), and MAUVE against held-out snippets of the same token length
   (MiniLM features); held-out human text measured the same way (`reference`); MAUVE also
   with the judge's own features (a causal LM's last-token state, as the MAUVE paper does)
   to see which featuriser separates weak sets better (`mauve_featurizers`);
4. the frontier: the diffusion model over steps x unmasking strategy x temperature and the
   AR model over temperature, each point with its cost (forward passes, seconds per sample)
   and quality; per checkpoint x strategy (x steps) the judge perplexity read at human
   text's entropy, interpolated over temperature (`matched`, or null with the reason).

The AR learning rates are tuned first (short runs over `--ar-lrs`, the best by held-out
NLL), as the diffusion preset's were (BENCHMARKS.md, "What we tried").

    python bench/ar_vs_diffusion.py                # 10 minutes per model (~1 h idle)
    python bench/ar_vs_diffusion.py --quick        # smoke run: tiny model, seconds per part

Writes bench/results/ar_vs_diffusion.json (`--quick`: ar_vs_diffusion_quick.json).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _common import ROOT, command, machine, write_result


def lscpu_machine() -> dict[str, Any]:
    """The CPU as lscpu names it, the SIMD flags that decide training speed, and the load."""
    out: dict[str, Any] = dict(machine())
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("Flags", "").split()
    out["lscpu_model_name"] = fields.get("Model name")
    out["simd_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    out["load_average_at_start"] = os.getloadavg()
    return out


def _parse_lrs(text: str) -> list[tuple[float, float]]:
    pairs = []
    for item in filter(None, text.split(",")):
        body, _, head = item.partition("/")
        pairs.append((float(body), float(head or body)))
    return pairs


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per model")
    p.add_argument("--quick", action="store_true", help="smoke run on the tiny preset")
    p.add_argument("--ar-lrs", default="3e-4/2e-3,1e-4/1e-3,1e-3/3e-3", help="body/head pairs")
    p.add_argument("--diffusion-lrs", default="", help="body/head pairs (default: the preset's)")
    p.add_argument(
        "--trial-minutes",
        type=float,
        help="per lr trial (default minutes / 2); 0: no trials, one given pair per objective",
    )
    p.add_argument("--steps", default="8,32", help="frontier: denoising steps")
    p.add_argument("--strategies", default="entropy,confidence,random", help="frontier")
    p.add_argument("--samples", type=int, default=100, help="per point (MAUVE needs 100)")
    # 32: half a training block, so that the frontier fits in about half an hour on 2 cores;
    # the scheduled strategies then make at most 32 passes (64 steps = one token per pass).
    p.add_argument("--length", type=int, default=32, help="tokens per sample")
    # Up to 1.3: a line is read at human text's entropy only if it gets there.
    p.add_argument("--temperatures", default="0.7,1.0,1.3", help="top-k 50, both; two or more")
    p.add_argument(
        "--judge", default="smollm2-135m", help="a packaged judge, a causal model dir, or 'ar'"
    )
    p.add_argument("--batch-size", type=int, default=32, help="generation batch")
    p.add_argument("--threads", type=int, default=2, help="shared by runs trained side by side")
    p.add_argument("--eval-blocks", type=int, default=128, help="held-out blocks scored")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "ar_vs_diffusion")
    return p.parse_args()


def base_spec(args: argparse.Namespace):
    from shared.contracts.specs import TrainSpec

    # Evaluate and save only at the end: the budget goes to training.
    common = {"max_steps": 10**9, "eval_every": 10**9, "save_every": 10**9, "log_every": 25}
    if args.quick:
        return TrainSpec.from_preset("tiny", max_texts=300, seq_len=32, **common)
    return TrainSpec.from_preset("minilm", **common)


def with_changes(spec, **changes):
    """A validated copy of TrainSpec `spec` with `changes`; an AR copy drops the masking
    recipe (`DIFFUSION_RECIPE`: the `tiny` preset trains on clipped mask ratios)."""
    from shared.contracts.specs import DIFFUSION_RECIPE

    data = {**spec.model_dump(), **changes}
    if data.get("objective") == "ar":
        for key in DIFFUSION_RECIPE:
            data.pop(key, None)
    return type(spec).model_validate(data)


def _train_one(spec_json: str, out: str, threads: int) -> dict[str, Any]:
    """Train one spec from scratch in this (child) process with `threads` threads."""
    import torch

    from shared.contracts.specs import TrainSpec
    from worker.diffusion.training import Trainer

    torch.set_num_threads(threads)
    shutil.rmtree(out, ignore_errors=True)  # an earlier run there is replaced, not resumed
    t0 = time.perf_counter()
    summary = Trainer(TrainSpec.model_validate_json(spec_json), out).train()
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary


def train_side_by_side(specs: dict[str, Any], out: Path, threads: int) -> dict[str, dict]:
    """Train every spec at the same time, one process each, sharing `threads` between them.

    On a machine shared with other work the load changes from minute to minute; runs that
    train side by side see the same load, so equal wall-clock budgets stay equal compute.
    """
    context = multiprocessing.get_context("spawn")
    each = max(1, threads // len(specs))
    with context.Pool(len(specs)) as pool:
        pending = {
            name: pool.apply_async(_train_one, (spec.model_dump_json(), str(out / name), each))
            for name, spec in specs.items()
        }
        summaries = {name: job.get() for name, job in pending.items()}
    for name, summary in summaries.items():
        spec = specs[name]
        print(
            f"  {name}: {spec.objective} lr {spec.lr:g}/{spec.head_lr}: {summary['steps']} "
            f"steps, {summary['tokens_seen']:,} tokens, {summary['wall_seconds']:.0f}s wall; "
            f"held-out {'exact' if spec.objective == 'ar' else 'bound'} ppl "
            f"{summary['bound']['perplexity']:.1f}"
        )
    return summaries


def train_in_turn(specs: dict[str, Any], out: Path, threads: int) -> dict[str, dict]:
    """Train every spec alone, one after the other, each with all `threads`: the budget
    each gets is then its own machine's, not half of it."""
    summaries = {}
    for name, spec in specs.items():
        summaries.update(train_side_by_side({name: spec}, out, threads))
    return summaries


def tune(
    base, pairs: dict[str, list[tuple[float, float]]], minutes: float, out: Path, threads: int
) -> tuple[list[dict], dict[str, tuple[float, float]]]:
    """Short runs side by side, one per objective and (lr, head_lr) pair; per objective the
    best pair by held-out NLL (the training loop's own evaluation: the bound for diffusion,
    the exact NLL for AR). An objective without pairs keeps the preset's rates."""
    specs = {
        f"trial-{objective}-{lr:g}-{head_lr:g}": with_changes(
            base, objective=objective, minutes=minutes, lr=lr, head_lr=head_lr
        )
        for objective, objective_pairs in pairs.items()
        for lr, head_lr in objective_pairs
    }
    summaries = train_side_by_side(specs, out, threads) if specs else {}
    trials = [
        {
            "objective": specs[name].objective,
            "lr": specs[name].lr,
            "head_lr": specs[name].head_lr,
            "minutes": minutes,
            "steps": summary["steps"],
            "nats_per_token": summary["bound"]["nats_per_token"],
            "perplexity": summary["bound"]["perplexity"],
        }
        for name, summary in summaries.items()
    ]
    best = {"ar": (base.lr, base.head_lr), "diffusion": (base.lr, base.head_lr)}
    for objective in best:
        mine = [t for t in trials if t["objective"] == objective]
        if mine:
            winner = min(mine, key=lambda t: t["nats_per_token"])
            best[objective] = (winner["lr"], winner["head_lr"])
    return trials, best


def held_out(diffusion_ckpt: str, ar_ckpt: str, spec, max_blocks: int) -> dict[str, Any]:
    """Bound and exact perplexity on the same held-out blocks (the first `max_blocks` of the
    validation split) and the same tokens."""
    from shared.contracts.grid import DEFAULT_EVAL_GRID
    from worker.diffusion import data
    from worker.diffusion.causal import evaluate_causal, load_causal_checkpoint
    from worker.diffusion.evaluation import bound_of, evaluate_ratios, unigram_entropy
    from worker.diffusion.modeling import load_checkpoint

    diffusion, tokenizer, _ = load_checkpoint(diffusion_ckpt)
    ar, _, _ = load_causal_checkpoint(ar_ckpt)
    val = data.pack(data.corpus_for(spec).validation, tokenizer, spec.seq_len)[:max_blocks]
    t0 = time.perf_counter()
    grid = evaluate_ratios(diffusion, val, tokenizer, list(DEFAULT_EVAL_GRID), batch_size=32)
    bound = bound_of(grid)
    exact = evaluate_causal(ar, val, tokenizer, batch_size=32)
    print(
        f"held-out ({len(val)} blocks, {exact.tokens:,} tokens, {time.perf_counter() - t0:.0f}s):"
        f" diffusion bound ppl <= {bound.perplexity:.1f}, AR ppl = {exact.perplexity:.1f}"
    )
    return {
        "blocks": len(val),
        "tokens_scored": exact.tokens,
        "diffusion_grid": [asdict(r) for r in grid],
        "diffusion_bound": asdict(bound),
        "ar_exact": asdict(exact),
        "unigram_entropy": unigram_entropy(val, tokenizer.all_special_ids),
    }


def measure(
    samples, seconds: float, judge, references, featurizer: str, other_featurizer: str | None
) -> dict[str, Any]:
    """Cost and quality of one sample set (MAUVE under `other_featurizer` too, if given)."""
    from worker.diffusion.evaluation import sample_metrics
    from worker.diffusion.mauve import mauve_score
    from worker.diffusion.quality import sample_set_quality

    completions = [s.completion for s in samples]
    quality = sample_set_quality(
        completions,
        [s.prompt for s in samples],
        judge=judge,
        references=references,
        featurizer=featurizer,
    )
    return {
        "samples": len(samples),
        "forward_passes": sum(s.forward_passes for s in samples) / len(samples),
        "seconds_per_sample": seconds / len(samples),
        "judge_ppl": quality.judge_ppl,
        "entropy": quality.entropy,
        "repetition": quality.repetition,
        "mauve": quality.mauve,
        "mauve_at_floor": quality.mauve_at_floor,
        "mauve_reason": quality.mauve_reason,
        "mauve_judge_features": (
            mauve_score(completions, references, featurizer=other_featurizer).score
            if other_featurizer
            else None
        ),
        "distinct_2": sample_metrics(completions)["distinct_2"],
        "examples": completions[:3],
    }


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def params(checkpoint: str) -> int:
    from worker.diffusion.modeling import load_checkpoint

    # parameters() yields a shared tensor once: the tied output matrix is counted once.
    return sum(p.numel() for p in load_checkpoint(checkpoint)[0].parameters())


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from shared.contracts.grid import SamplerSpec
    from shared.settings import get_settings
    from worker.diffusion import data
    from worker.diffusion.ar_generate import generate_causal
    from worker.diffusion.generate import generate
    from worker.diffusion.judge import load_judge
    from worker.diffusion.mauve import DEFAULT_FEATURIZER, mauve_score, reference_snippets
    from worker.diffusion.modeling import load_checkpoint
    from worker.diffusion.quality import sample_set_quality

    started = time.perf_counter()
    host = lscpu_machine()
    minutes = 0.1 if args.quick else args.minutes
    base = with_changes(base_spec(args), minutes=minutes)
    if args.quick:
        args.steps, args.strategies = "4,8", "entropy,confidence"

    pairs = {"ar": _parse_lrs(args.ar_lrs), "diffusion": _parse_lrs(args.diffusion_lrs)}
    if args.trial_minutes == 0:  # rates tuned elsewhere (bench/lr_sweeps.py): one pair each
        if any(len(p) > 1 for p in pairs.values()):
            raise SystemExit("--trial-minutes 0 takes one body/head pair per objective")
        trials = []
        best = {k: p[0] if p else (base.lr, base.head_lr) for k, p in pairs.items()}
    else:
        grid = f"AR {args.ar_lrs}; diffusion {args.diffusion_lrs or 'preset'}"
        print(f"learning-rate trials ({grid}):")
        trial_minutes = args.trial_minutes or minutes / 2
        trials, best = tune(base, pairs, trial_minutes, args.out, args.threads)
    print(f"learning rates (body, head): {best}")

    print(f"training each for {minutes:g} minutes, one after the other:")
    specs = {
        objective: with_changes(base, objective=objective, lr=lr, head_lr=head_lr)
        for objective, (lr, head_lr) in best.items()
    }
    runs = train_in_turn(specs, args.out, args.threads)
    n_params = params(runs["diffusion"]["checkpoint"])
    compute = {
        name: {
            "steps": r["steps"],
            "tokens_seen": r["tokens_seen"],
            "train_seconds": r["train_seconds"],
            "wall_seconds": r["wall_seconds"],
            "tokens_per_s": r["tokens_per_s"],
            "flops": 6 * n_params * r["tokens_seen"],
            "lr": r["spec"]["lr"],
            "head_lr": r["spec"]["head_lr"],
            "mixed_precision": r["mixed_precision"],
        }
        for name, r in runs.items()
    }
    likelihood = held_out(
        runs["diffusion"]["checkpoint"], runs["ar"]["checkpoint"], base, args.eval_blocks
    )
    ar_ppl = likelihood["ar_exact"]["perplexity"]
    bound_ppl = likelihood["diffusion_bound"]["perplexity"]

    diffusion, tokenizer, _ = load_checkpoint(runs["diffusion"]["checkpoint"])
    ar_model, ar_tokenizer = load_judge(runs["ar"]["checkpoint"])
    judge_name = "the AR run's final checkpoint" if args.judge == "ar" else args.judge
    judge = (
        (ar_model, ar_tokenizer)
        if args.judge == "ar"
        else load_judge(args.judge, cache_dir=get_settings().judge_cache_dir)
    )
    length = min(args.length, base.seq_len - 2)
    n = args.samples
    temperatures = [float(t) for t in args.temperatures.split(",")]
    validation = data.corpus_for(base).validation
    pool = reference_snippets(validation, tokenizer, 2 * n, length, seed=0)
    references, other = pool[:n], pool[n:]  # MAUVE's references; human text apart from them
    human = sample_set_quality(other or references, judge=judge, references=references)
    judge_features = judge_folder(args.judge, runs["ar"]["checkpoint"])
    human_judge_mauve = mauve_score(other or references, references, featurizer=judge_features)
    reference = {
        "texts": len(other or references),
        "judge_ppl": human.judge_ppl,
        "entropy": human.entropy,
        "repetition": human.repetition,
        "mauve": human.mauve,  # against the references: how close human text gets
        "mauve_reason": human.mauve_reason,
        "mauve_judge_features": human_judge_mauve.score,
    }
    print(
        f"held-out snippets under {judge_name}: judge ppl {human.judge_ppl:.1f}, entropy "
        f"{human.entropy:.2f}, repetition {human.repetition:.3f}, MAUVE {human.mauve}"
    )
    common = {"length": length, "num_samples": n, "batch_size": args.batch_size}
    frontier: list[dict[str, Any]] = []
    payload = {
        "judge": judge_name,
        "ar_ppl": ar_ppl,
        "diffusion_bound_ppl": bound_ppl,
        "bound_ratio": bound_ppl / ar_ppl if ar_ppl else math.nan,
        "reference": reference,
        "frontier": frontier,
        "matched": [],
        "budget_minutes": minutes,
        "flops_formula": "6 * N * tokens_seen, N = all parameters (tied output matrix once)",
        "parameters": n_params,
        "compute": compute,
        "likelihood": likelihood,
        "lr_trials": trials,
        "settings": {
            "preset": base.preset,
            "length": length,
            "samples_per_point": n,
            "sampling": "topk 50",
            "temperatures": temperatures,
            "prompt": "",
            "judge": judge_name,
            "training": "one after the other",
            "mauve_featurizer": DEFAULT_FEATURIZER,
            "mauve_judge_featurizer": judge_features,
        },
        "machine": host,
        "command": command(),
    }
    grid = [("ar", "ar", None)] + [
        ("diffusion", strategy, int(steps))
        for strategy in args.strategies.split(",")
        for steps in args.steps.split(",")
    ]
    for model_name, strategy, steps in grid:
        for temperature in temperatures:
            sampler = SamplerSpec(sampling="topk", temperature=temperature)
            if model_name == "ar":
                fn, model, tok = generate_causal, ar_model, ar_tokenizer
            else:
                sampler = sampler.model_copy(update={"strategy": strategy, "steps": steps})
                fn, model, tok = generate, diffusion, tokenizer
            samples, seconds = timed(fn, model, tok, [""], sampler, **common)
            point = {"model": model_name, "strategy": strategy, "steps": steps}
            point["temperature"] = temperature
            point.update(
                measure(samples, seconds, judge, references, DEFAULT_FEATURIZER, judge_features)
            )
            frontier.append(point)
            print(
                f"  {model_name:>9} {strategy:>10} {steps or '-':>3} T={temperature:g}: "
                f"{point['forward_passes']:5.1f} passes, {point['seconds_per_sample']:.2f} "
                f"s/sample, judge ppl {point['judge_ppl']:.1f}, entropy {point['entropy']:.2f}, "
                f"repetition {point['repetition']:.3f}, MAUVE {point['mauve']} "
                f"({point['mauve_judge_features']} on the judge's features)"
            )
            payload["matched"] = matched(frontier, reference["entropy"])
            payload["mauve_featurizers"] = featurizer_comparison(frontier, reference)
            save(payload, args, started, complete=False)  # a partial frontier survives a stop
    path = save(payload, args, started, complete=True)
    for m in payload["matched"]:
        read = f"{m['judge_ppl']:.1f}" if m["judge_ppl"] is not None else m["reason"]
        print(f"  at human diversity: {m['model']} {m['strategy']} {m['steps'] or ''}: {read}")
    print(f"bound ratio {payload['bound_ratio']:.2f}; wrote {path}")


def judge_folder(judge: str, ar_checkpoint: str) -> str:
    """Where the judge's weights are, for MAUVE on its own features beside MiniLM's: a
    packaged judge's converted folder, the AR run's checkpoint, or the name as given."""
    from shared.settings import get_settings
    from worker.diffusion.packaged_judge import PACKAGED_JUDGES, cached_judge_dir

    if judge == "ar":
        return ar_checkpoint
    if judge in PACKAGED_JUDGES:
        return str(cached_judge_dir(judge, get_settings().judge_cache_dir))
    return judge


def featurizer_comparison(frontier: list[dict[str, Any]], reference: dict) -> dict[str, Any]:
    """Per MAUVE featuriser: human text's score, the sets' range, and how many sit at the
    floor (indistinguishable from fully separated). The better featuriser spreads the sets
    apart (fewer at the floor, a wider range) and keeps human text on top."""
    from worker.diffusion.mauve import separated_floor

    floor = separated_floor()
    out = {}
    for name, key in (("minilm", "mauve"), ("judge", "mauve_judge_features")):
        scores = [p[key] for p in frontier if p.get(key) is not None]
        out[name] = {
            "human": reference.get(key),
            "sets": len(scores),
            "at_floor": sum(1 for x in scores if x <= floor * 1.001),
            "min": min(scores, default=None),
            "max": max(scores, default=None),
        }
    return out


def matched(frontier: list[dict[str, Any]], human_entropy: float) -> list[dict[str, Any]]:
    """Per model x strategy x steps: judge ppl at human text's entropy over temperature."""
    from shared.contracts.matched import LinePoint, matched_reading

    lines: dict[tuple, list[dict[str, Any]]] = {}
    for p in frontier:
        lines.setdefault((p["model"], p["strategy"], p["steps"]), []).append(p)
    out = []
    for (model_name, strategy, steps), points in lines.items():
        reading = matched_reading(
            [
                LinePoint(p["entropy"], p["judge_ppl"], p["repetition"], p["temperature"])
                for p in points
            ],
            human_entropy,
        )
        out.append(
            {
                "model": model_name,
                "strategy": strategy,
                "steps": steps,
                "judge_ppl": reading.judge_ppl,
                "repetition": reading.repetition,
                "between_temperatures": reading.between,
                "reason": reading.reason,
            }
        )
    return out


def save(payload: dict[str, Any], args: argparse.Namespace, started: float, complete: bool):
    payload["complete"] = complete
    payload["wall_seconds"] = time.perf_counter() - started
    payload["machine"]["load_average_now"] = os.getloadavg()
    if args.quick:  # a smoke run's figures are not results
        path = args.out / "ar_vs_diffusion_quick.json"
        path.write_text(json.dumps(payload, indent=2) + "\n")
        return path
    return write_result("ar_vs_diffusion", payload)


if __name__ == "__main__":
    main()
