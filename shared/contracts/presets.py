"""Training presets: named starting points for a `TrainSpec` (`TrainSpec.from_preset`)."""

from __future__ import annotations

from typing import Any

# Presets. `minilm` and `tiny` work offline; `quick-test` and `full` train distilroberta-base
# and roberta-base on wikitext-2, for users who can reach the Hugging Face hub.
PRESETS: dict[str, dict[str, Any]] = {
    # Fine-tunes the packaged all-MiniLM-L6-v2 encoder (22.7M params) on the KJV: the
    # best quality reachable in minutes on a laptop CPU.
    "minilm": {},
    # A 2-layer encoder from scratch: seconds per run, for tests and smoke checks.
    "tiny": {
        "model": "scratch",
        "scratch": {"layers": 2, "hidden": 128, "heads": 4, "vocab_size": 2048},
        # Rotary positions and no unigram start: with either of the two, this model never
        # left the unigram solution as a masked LM (BENCHMARKS.md, "The scratch model").
        "init_output_bias": False,
        "lr": 1e-3,
        "head_lr": None,
        "warmup_steps": 10,
        "max_steps": 200,
        "eval_every": 100,
        "save_every": 100,
        "max_texts": 4000,
        "eval_batches": 2,
    },
    # Hub presets (need the Hugging Face hub or a local copy).
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
