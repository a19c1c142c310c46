"""Quality bar of a trained checkpoint: the figures BENCHMARKS.md records.

- CE(t) and masked-token accuracy on the whole held-out split, on the eval grid;
- the ELBO bound vs the unigram entropy of the same text (a context-free model's loss);
- samples from several unmasking strategies, with distinct-n, the largest share any one
  token takes of a sample, and the share of words that occur in the training corpus.

    python bench/quality.py --checkpoint runs/minilm/checkpoint-STEP

`ratio` in the result file is bound / unigram entropy (below 1: the model uses context).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from _common import ROOT, command, machine, write_result

PROMPTS = ["And God said", "In the beginning", "The LORD is my shepherd", "And it came to pass"]
STRATEGIES = {
    "confidence": {"strategy": "confidence", "sampling": "topk", "temperature": 0.7},
    "random": {"strategy": "random", "sampling": "topk", "temperature": 0.7},
    "margin": {"strategy": "margin", "sampling": "topk", "temperature": 0.7},
    "margin_t0.9": {"strategy": "margin", "sampling": "topk", "temperature": 0.9},
    "entropy": {"strategy": "entropy", "sampling": "topk", "temperature": 0.7},
    "threshold": {"strategy": "threshold", "sampling": "greedy", "threshold": 0.9},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--samples", type=int, default=4, help="per prompt and strategy")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import torch

    from shared.contracts.grid import DEFAULT_EVAL_GRID, SamplerSpec
    from shared.contracts.specs import TrainSpec
    from worker.diffusion import data
    from worker.diffusion.evaluation import (
        bound_of,
        evaluate_ratios,
        real_word_share,
        sample_metrics,
        unigram_entropy,
        word_tokenize,
    )
    from worker.diffusion.generate import generate
    from worker.diffusion.modeling import load_checkpoint

    model, tokenizer, meta = load_checkpoint(args.checkpoint)
    spec = TrainSpec.model_validate(meta["spec"])
    corpus = data.corpus_for(spec)
    val = data.pack(corpus.validation, tokenizer, spec.seq_len)
    vocabulary = {w for t in corpus.train for w in word_tokenize(t)}

    t0 = time.perf_counter()
    results = evaluate_ratios(model, val, tokenizer, list(DEFAULT_EVAL_GRID), batch_size=32)
    bound = bound_of(results)
    entropy = unigram_entropy(val, tokenizer.all_special_ids)
    print(f"held-out: {len(val)} blocks of {spec.seq_len} tokens ({time.perf_counter() - t0:.0f}s)")
    for r in results:
        print(f"  CE({r.ratio:.2f}) = {r.loss:.3f} nats   accuracy {r.accuracy:6.1%}")
    print(
        f"bound {bound.nats_per_token:.3f} nats/token (ppl <= {bound.perplexity:.1f}); "
        f"unigram entropy {entropy:.3f} nats"
    )

    length = spec.seq_len - 2 - 4  # a training-length block minus a short prompt
    generations = {}
    for name, settings in STRATEGIES.items():
        sampler = SamplerSpec(steps=args.steps, **settings)
        torch.manual_seed(0)
        samples = generate(
            model, tokenizer, PROMPTS, sampler, length=length, num_samples=args.samples
        )
        texts_out = [s.completion for s in samples]
        metrics = sample_metrics(texts_out)
        metrics["real_word_share"] = real_word_share(texts_out, vocabulary)
        metrics["forward_passes"] = sum(s.forward_passes for s in samples) / len(samples)
        generations[name] = {
            "settings": settings,
            "metrics": metrics,
            "examples": [s.text for s in samples[:: args.samples]],
        }
        print(
            f"\n{name}: distinct-2 {metrics['distinct_2']:.2f}, max token share "
            f"{metrics['max_token_share']:.2f}, real words {metrics['real_word_share']:.1%}, "
            f"{metrics['forward_passes']:.1f} passes"
        )
        for text in generations[name]["examples"]:
            print(f"  {text}")

    path = write_result(
        "quality",
        {
            "ratio": bound.nats_per_token / entropy,
            "checkpoint": str(args.checkpoint),
            "train_summary_steps": meta.get("step"),
            "eval": [asdict(r) for r in results],
            "bound": asdict(bound),
            "unigram_entropy": entropy,
            "generations": generations,
            "command": command(),
            "machine": machine(),
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
