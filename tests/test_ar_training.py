"""The AR objective through the one training loop: loss, exact evaluation, checkpoints that
load as causal LMs, exact resume, and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from shared.contracts.grid import SamplerSpec
from shared.contracts.specs import TrainSpec
from worker.diffusion.ar_generate import generate_causal, load_for_generation
from worker.diffusion.causal import is_causal_checkpoint, load_causal_checkpoint
from worker.diffusion.training import Trainer

from .test_training import Recorder, tiny_spec


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, tiny_corpus):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(tiny_corpus))
    return path


def test_objective_is_validated():
    assert TrainSpec().objective == "diffusion"
    with pytest.raises(ValueError, match="objective"):
        TrainSpec(objective="gpt")


def test_ar_run_trains_evaluates_exactly_and_saves_a_causal_lm(tmp_path, corpus_file):
    rec = Recorder()
    evals: list[dict] = []
    rec.on_evaluate = lambda step, results, bound: evals.append((step, results, bound))
    spec = tiny_spec(
        corpus_file,
        objective="ar",
        max_steps=60,
        eval_every=30,
        save_every=30,
        init_output_bias=True,  # off by default for a scratch model; asked for here
    )
    summary = Trainer(spec, tmp_path / "run", [rec]).train()
    losses = [rec.losses[s] for s in sorted(rec.losses)]
    assert all(math.isfinite(x) for x in losses)
    # The log-prior bias starts the AR head at the unigram entropy too.
    assert losses[0] == pytest.approx(summary["unigram_entropy"], abs=0.5)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    assert [step for step, _, _ in evals] == [30, 60]
    _, grid, exact = evals[-1]
    assert grid == [] and exact["exact"] is True
    assert exact["perplexity"] == pytest.approx(math.exp(exact["nats_per_token"]))
    assert exact["nats_per_token"] < summary["unigram_entropy"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["objective"] == "ar" and results["eval"] == []
    assert results["bound"]["exact"] is True

    checkpoint = summary["checkpoint"]
    assert is_causal_checkpoint(checkpoint)
    plain = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert plain.config.is_decoder
    model, tokenizer, meta = load_causal_checkpoint(checkpoint)
    assert TrainSpec.model_validate(meta["spec"]).objective == "ar"
    samples = generate_causal(model, tokenizer, ["The king"], SamplerSpec(), length=8)
    assert load_for_generation(checkpoint)[2] is generate_causal
    assert samples[0].forward_passes == 8 and samples[0].text.lower().startswith("the king")


def test_ar_resume_reproduces_the_uninterrupted_loss_curve(tmp_path, corpus_file):
    spec = tiny_spec(corpus_file, objective="ar", max_steps=12)
    full = Recorder()
    Trainer(spec, tmp_path / "full", [full]).train()
    first = Recorder(stop_at=5)
    Trainer(spec, tmp_path / "split", [first]).train()
    second = Recorder()
    summary = Trainer(spec, tmp_path / "split", [second]).train()
    assert summary["resumed_from_step"] == 5 and summary["steps"] == 12
    for step in range(6, 13):
        assert second.losses[step] == pytest.approx(full.losses[step], rel=1e-5, abs=1e-6), step


def test_ar_and_diffusion_start_from_the_same_weights(corpus_file):
    from worker.diffusion.training import prepare_data_and_model

    torch.manual_seed(0)
    diffusion = prepare_data_and_model(tiny_spec(corpus_file))
    ar = prepare_data_and_model(tiny_spec(corpus_file, objective="ar"))
    assert torch.equal(ar.val_blocks, diffusion.val_blocks)
    a, d = ar.model.state_dict(), diffusion.model.state_dict()
    assert a.keys() == d.keys()
    assert all(torch.equal(a[k], d[k]) for k in a)


def test_cli_trains_evaluates_and_generates_an_ar_model(tmp_path, corpus_file, capsys):
    from text_diffusion.cli import main

    out = tmp_path / "run"
    code = main(
        ["train", "--preset", "tiny", "--objective", "ar", "--dataset", str(corpus_file),
         "--max-steps", "6", "--seq-len", "32", "--batch-size", "4", "--eval-batches", "1",
         "--output-dir", str(out), "--samples", "1", "--prompt", "The king", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "exact NLL" in printed and "left to right" in printed
    checkpoint = out / "checkpoint-6"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--json", "--batches", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bound"]["exact"] is True and result["eval"] == []
    args = ["generate", "--checkpoint", str(checkpoint), "--num-samples", "2", "--length", "5"]
    assert main([*args, "--prefix", "The king", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [s["forward_passes"] for s in lines] == [5, 5]
    assert main([*args, "--template", "The [MASK] walked"]) != 0
    assert "infilling" in capsys.readouterr().err
