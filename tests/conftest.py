"""Shared fixtures: tiny real models built from a corpus the tests generate."""

from __future__ import annotations

import pytest
import torch

from tests.corpus import paragraphs


@pytest.fixture(autouse=True)
def _one_thread():
    # Tests share 2 cores with whatever else runs; one thread keeps timings sane.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus() -> list[str]:
    return paragraphs(200, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_corpus):
    """(model, tokenizer): a 2-layer x 64 RoBERTa with a 400-token BPE, untrained, eval mode."""
    from shared.contracts.specs import ScratchModelSpec
    from worker.diffusion.modeling import build_scratch

    torch.manual_seed(0)
    model, tokenizer = build_scratch(
        ScratchModelSpec(layers=2, hidden=64, heads=2, vocab_size=400), tiny_corpus, seq_len=64
    )
    model.eval()
    return model, tokenizer
