"""The training recipe's options (TrainSpec: head_warmup_steps, stratified_t, t_distribution,
t_low/t_high, complementary_masks) do what they say, and the stratified evaluation bound."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from shared.contracts.specs import MaskingSpec, TrainSpec
from worker.diffusion.causal import causal_from_masked
from worker.diffusion.data import pack
from worker.diffusion.likelihood import (
    BlockScores,
    causal_scores,
    masked_counts,
    paired_difference,
    stratified_bound,
)
from worker.diffusion.masking import (
    BELL_MEAN,
    BELL_STD,
    RatioDraw,
    mask_tokens,
    sample_ratios,
    special_ids,
)
from worker.diffusion.modeling import lm_head
from worker.diffusion.objectives import DiffusionObjective
from worker.diffusion.optim import lr_factor
from worker.diffusion.training import Trainer

EPS = 1e-3


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, tiny_corpus):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(tiny_corpus))
    return path


def tiny_spec(corpus_file, **overrides) -> TrainSpec:
    base = {
        "dataset": str(corpus_file),
        "scratch": {"layers": 2, "hidden": 64, "heads": 2, "vocab_size": 400},
        "seq_len": 32,
        "batch_size": 8,
        "lr": 3e-3,
        "warmup_steps": 2,
        "max_steps": 4,
        "mixed_precision": "no",
        "eval_every": 1000,
        "save_every": 1000,
        "eval_batches": 1,
        "eval_ratios": [0.5, 1.0],
    }
    return TrainSpec.from_preset("tiny", **{**base, **overrides})


@pytest.fixture(scope="module")
def blocks(tiny_model, tiny_corpus):
    _, tokenizer = tiny_model
    return pack(tiny_corpus[:60], tokenizer, 32)  # (M, 32)


def masks(blocks, tokenizer, spec, **kw):
    return mask_tokens(
        blocks,
        spec,
        special_ids=special_ids(tokenizer),
        mask_token_id=tokenizer.mask_token_id,
        generator=torch.Generator().manual_seed(kw.pop("seed", 0)),
        **kw,
    )


# ----------------------------------------------------------------------------- stratified t


def test_stratified_uniform_ratios_fill_every_stratum_of_a_batch():
    spec, B = MaskingSpec(mode="uniform", eps=EPS), 16
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        t = sample_ratios(B, spec, g, RatioDraw(stratified=True))
        u = (1.0 - t) / (1.0 - EPS)  # back to the quantile in [0, 1)
        assert sorted(torch.floor(u * B).long().tolist()) == list(range(B))


def test_independent_ratios_leave_strata_empty():
    spec, B = MaskingSpec(mode="uniform", eps=EPS), 16
    g = torch.Generator().manual_seed(0)
    covered = []
    for _ in range(20):
        u = (1.0 - sample_ratios(B, spec, g, RatioDraw(stratified=False))) / (1.0 - EPS)
        covered.append(len(set(torch.floor(u * B).long().tolist())))
    assert max(covered) < B  # iid draws: about 10 of 16 strata per batch


def test_stratified_grid_gives_every_grid_ratio_to_the_batch():
    spec = MaskingSpec(mode="grid", grid=[0.1, 0.4, 0.7, 1.0])
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        r = sample_ratios(12, spec, g, RatioDraw(stratified=True)).tolist()
        assert sorted(r.count(x) for x in spec.grid) == [3, 3, 3, 3]
        one = sample_ratios(12, spec, g, RatioDraw(stratified=False))
        assert len(set(one.tolist())) == 1  # off: one ratio for the whole batch


# ----------------------------------------------------------------------- t distributions


@pytest.mark.parametrize("stratified", [False, True])
def test_clipped_and_bell_ratios_stay_in_their_range(stratified):
    spec = MaskingSpec(mode="uniform", eps=EPS)
    g = torch.Generator().manual_seed(0)
    clipped = RatioDraw(stratified, "clipped", 0.3, 0.8)
    c = torch.cat([sample_ratios(16, spec, g, clipped) for _ in range(200)])
    assert c.min() >= 0.3 and c.max() <= 0.8
    assert c.min() < 0.32 and c.max() > 0.78  # and fills it
    b = torch.cat([sample_ratios(16, spec, g, RatioDraw(stratified, "bell")) for _ in range(200)])
    u = torch.cat([sample_ratios(16, spec, g, RatioDraw(stratified)) for _ in range(200)])
    assert b.min() > EPS and b.max() <= 1.0
    assert abs(float(b.mean()) - 0.5) < 0.02
    assert float(b.std()) < 0.8 * float(u.std())  # a bell: concentrated in the middle


def test_grid_mode_trains_only_grid_ratios_inside_the_clip_and_the_bell_favours_the_middle():
    spec = MaskingSpec(mode="grid")  # 0.1 .. 1.0
    g = torch.Generator().manual_seed(0)
    clipped = torch.cat(
        [sample_ratios(8, spec, g, RatioDraw(True, "clipped", 0.3, 0.8)) for _ in range(50)]
    )
    assert set(clipped.tolist()) == {0.3, 0.4, 0.5, 0.6, 0.7, 0.8}
    bell = torch.cat([sample_ratios(10, spec, g, RatioDraw(True, "bell")) for _ in range(100)])
    share = {x: (bell == x).float().mean().item() for x in (0.1, 0.5, 1.0)}
    assert share[0.5] > 2 * share[0.1] and share[0.5] > 5 * share[1.0]


def test_recipe_fields_are_validated_naming_the_field():
    cases = [
        ({"t_low": 0.8, "t_high": 0.3}, "t_high"),
        ({"t_low": 0.0}, "t_low"),
        ({"t_high": 1.5}, "t_high"),
        ({"head_warmup_steps": -1}, "head_warmup_steps"),
        ({"t_distribution": "cauchy"}, "t_distribution"),
        ({"complementary_masks": True, "batch_size": 15}, "complementary_masks"),
        ({"complementary_masks": True, "objective": "ar"}, "complementary_masks"),
        ({"t_distribution": "clipped", "t_low": 0.41, "t_high": 0.49}, "t_low"),
    ]
    for overrides, field in cases:
        with pytest.raises(ValidationError) as exc:
            TrainSpec(**overrides)
        assert exc.value.errors()[0]["loc"] == (field,), overrides


def test_an_ar_run_of_a_preset_leaves_out_the_presets_masking_recipe():
    """Diffusion trains on clipped mask ratios by default; an AR run (the API, a form
    echoing the preset's values) trains without them, and asking AR for one is refused."""
    assert TrainSpec.from_preset("tiny").t_distribution == "clipped"
    assert TrainSpec.from_preset("minilm").t_distribution == "clipped"
    assert TrainSpec(objective="ar").t_distribution == "uniform"
    ar = TrainSpec.from_preset_data("tiny", {"objective": "ar"})
    assert ar.objective == "ar" and ar.t_distribution == "uniform"
    echoed = TrainSpec.from_preset_data("tiny", {"objective": "ar", "t_distribution": "clipped"})
    assert echoed.t_distribution == "uniform"
    with pytest.raises(ValidationError) as exc:
        TrainSpec.from_preset_data("tiny", {"objective": "ar", "t_distribution": "bell"})
    assert exc.value.errors()[0]["loc"] == ("t_distribution",)


# ----------------------------------------------------------------- complementary masks


@pytest.mark.parametrize("mode", ["grid", "uniform"])
def test_complementary_pair_masks_every_non_prefix_token_exactly_once(tiny_model, blocks, mode):
    _, tokenizer = tiny_model
    ids = blocks[:8]
    spec = MaskingSpec(mode=mode, prefix_length=4)
    batch = masks(ids, tokenizer, spec, complementary=True, draw=RatioDraw(stratified=True))
    first, second = batch.masked[:8], batch.masked[8:]  # (8, T) each
    maskable = batch.maskable[:8]
    restored = torch.where(first, batch.labels[:8], batch.labels[8:])  # (8, T)
    assert torch.equal(restored[maskable], ids[maskable])  # each copy scores its own tokens
    assert not (first & second).any()
    assert torch.equal(first | second, batch.maskable[:8])
    assert not batch.masked[:, :4].any()  # the prefix is never masked
    assert torch.allclose(batch.ratios[8:], (1 - batch.ratios[:8]).clamp(min=spec.eps))
    if mode == "grid":  # the mean over every masked token of the batch
        assert batch.weights.sum().item() == pytest.approx(1.0, rel=1e-5)


def test_complementary_objective_pairs_half_the_blocks_at_the_same_cost(tiny_model, blocks):
    model, tokenizer = tiny_model
    ids = blocks[:8]
    on = DiffusionObjective(
        model, MaskingSpec(), special_ids(tokenizer), tokenizer.mask_token_id, complementary=True
    )
    rows, _ = on.inputs(ids, torch.Generator().manual_seed(0))
    labels = rows["labels"]  # (8, T): blocks 0..3, then their complements
    assert labels.shape == ids.shape
    restored = torch.where(labels[:4] >= 0, labels[:4], labels[4:])
    words = ~torch.isin(ids[:4], special_ids(tokenizer))  # (4, T)
    assert torch.equal(restored[words], ids[:4][words])  # every non-special token, once
    assert ((labels[:4] >= 0) & (labels[4:] >= 0)).sum() == 0
    off = DiffusionObjective(model, MaskingSpec(), special_ids(tokenizer), tokenizer.mask_token_id)
    rows_off, _ = off.inputs(ids, torch.Generator().manual_seed(0))
    assert not torch.equal(rows_off["labels"], labels)


# ------------------------------------------------------------------------ head warm-up


def test_lr_factor_holds_the_body_then_warms_it_up():
    spec = TrainSpec(head_warmup_steps=10, warmup_steps=5, lr_decay="constant")
    assert [lr_factor(spec, s, 0.0) for s in (0, 9)] == [0.0, 0.0]
    assert lr_factor(spec, 0, 0.0, head=True) == pytest.approx(0.2)
    assert lr_factor(spec, 10, 0.0) == pytest.approx(0.2)  # its own warm-up, after the head's
    assert lr_factor(spec, 14, 0.0) == lr_factor(spec, 14, 0.0, head=True) == 1.0


def test_head_warmup_trains_only_the_head_then_everything(tmp_path, corpus_file):
    def snapshot(model):
        head = {id(p) for p in lm_head(model).parameters()}
        embed = {id(p) for p in model.get_input_embeddings().parameters()}
        split = {"head": {}, "body": {}}
        for name, p in model.named_parameters():
            if not p.requires_grad:  # fixed tables (the rotary model's sinusoids)
                continue
            part = "head" if id(p) in head and id(p) not in embed else "body"
            split[part][name] = p.detach().clone()
        return split

    spec = tiny_spec(corpus_file, head_warmup_steps=3, max_steps=3)
    trainer = Trainer(spec, tmp_path / "a")
    before = snapshot(trainer._objective.model)
    trainer.train()
    after = snapshot(trainer._objective.model)
    assert before["head"] and before["body"]
    assert all(torch.equal(before["body"][n], after["body"][n]) for n in before["body"])
    assert all(not torch.equal(before["head"][n], after["head"][n]) for n in before["head"])

    trainer = Trainer(spec.model_copy(update={"max_steps": 5}), tmp_path / "b")
    before = snapshot(trainer._objective.model)
    trainer.train()
    after = snapshot(trainer._objective.model)
    moved = [n for n in before["body"] if not torch.equal(before["body"][n], after["body"][n])]
    assert len(moved) == len(before["body"])


# ------------------------------------------------- the full-range bound and its estimator


def test_masked_counts_are_stratified_over_one_to_n():
    n = torch.tensor([30, 7, 0, 1])
    counts = masked_counts(n, 10, torch.Generator().manual_seed(0))  # (10, 4)
    assert counts[:, 0].min() >= 1 and counts[:, 0].max() <= 30
    assert sorted(torch.div(counts[:, 0] - 1, 3, rounding_mode="floor").tolist()) == list(
        range(10)
    )  # one count in each tenth of 1..30
    assert set(counts[:, 1].tolist()) == set(range(1, 8))  # 10 draws over 7 counts: all
    assert counts[:, 2].eq(0).all() and counts[:, 3].eq(1).all()


class OracleMLM(nn.Module):
    """A stand-in masked LM whose CE(t) is known exactly: it knows the one block it is shown
    and puts probability (1 - m) + m / V on the right token, m being the share of the
    block's maskable tokens that are masked. Its per-token bound is mean_k -log((1 - k/n) +
    k/(nV)) over k = 1..n."""

    def __init__(self, block: torch.Tensor, n: int, vocab: int, mask_id: int) -> None:
        super().__init__()
        self.block, self.n, self.vocab, self.mask_id = block, n, vocab, mask_id
        self.lm_head = nn.Identity()  # hidden states are already log-probabilities
        self.unused = nn.Parameter(torch.zeros(1))  # so the model has a device

    def base_model(self, input_ids, attention_mask=None, return_dict=True):
        m = (input_ids == self.mask_id).sum(dim=1, keepdim=True) / self.n  # (B, 1)
        right = F.one_hot(self.block, self.vocab).double()  # (T, V)
        p = (1 - m[:, :, None]) * right + m[:, :, None] / self.vocab  # (B, T, V)
        return SimpleNamespace(last_hidden_state=p.log().float())

    def ce(self, m: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of a masked token when a share m of the block is masked."""
        return -((1 - m) + m / self.vocab).log()

    def expected_loss(self, t: torch.Tensor) -> torch.Tensor:
        """(R,) the uniform-mode training loss expected at ratios t (R,): each token masked
        with probability t, k masked weigh k / (t n) in all."""
        k = torch.arange(self.n + 1, dtype=torch.float64)  # (n + 1,)
        p = torch.distributions.Binomial(self.n, probs=t[:, None]).log_prob(k).exp()  # (R, n+1)
        return (p * k * self.ce(k / self.n)).sum(dim=1) / (t * self.n)

    def exact_bound(self) -> float:
        return float(self.ce(torch.arange(1, self.n + 1, dtype=torch.float64) / self.n).mean())


@pytest.fixture(scope="module")
def oracle(tiny_model, blocks):
    _, tokenizer = tiny_model
    block = blocks[0]
    n = int((~torch.isin(block, special_ids(tokenizer))).sum())
    model = OracleMLM(block, n, len(tokenizer), tokenizer.mask_token_id)
    return model, tokenizer, block.repeat(16, 1)  # (16, T): the block, 16 times


def training_loss(model, tokenizer, ids, draw, batches=100):
    """The mean uniform-mode (1/t-weighted) training loss over `batches` seeded batches."""
    objective = DiffusionObjective(
        model,
        MaskingSpec(mode="uniform", eps=EPS),
        special_ids(tokenizer),
        tokenizer.mask_token_id,
        draw=draw,
    )
    losses = []
    with torch.inference_mode():
        for k in range(batches):
            rows, _ = objective.inputs(ids, torch.Generator().manual_seed(k))
            losses.append(float(objective(**rows)))
    return sum(losses) / len(losses)


def test_the_full_range_bound_does_not_depend_on_the_training_t_distribution(oracle):
    model, tokenizer, ids = oracle
    exact = model.exact_bound()
    # The evaluation estimate takes no training distribution, and is unbiased for the bound
    # over the whole range: its mean over seeds is the exact value (within 3 standard errors).
    estimates = [stratified_bound(model, ids, tokenizer, draws=4, seed=s) for s in range(32)]
    nats = torch.tensor([e.nats_per_token for e in estimates], dtype=torch.float64)
    se = float(nats.std()) / math.sqrt(len(nats))
    assert abs(float(nats.mean()) - exact) < 3 * se and se < 0.03
    # The uniform-t training loss (1/t weights) is the same bound in expectation...
    assert training_loss(model, tokenizer, ids, RatioDraw(stratified=True)) == pytest.approx(
        exact, abs=0.1
    )
    # ...a clipped or bell training t is not (it weighs the ratios differently, unreweighted):
    # what it trains on changes; the bound the model is judged by does not.
    clipped = training_loss(model, tokenizer, ids, RatioDraw(True, "clipped", 0.3, 0.8), 30)
    bell = training_loss(model, tokenizer, ids, RatioDraw(True, "bell"), 30)
    t = torch.linspace(0.3, 0.8, 501, dtype=torch.float64)
    assert clipped == pytest.approx(float(model.expected_loss(t).mean()), abs=0.05)
    t = torch.linspace(0.01, 1, 1000, dtype=torch.float64)
    density = torch.exp(-0.5 * ((t - BELL_MEAN) / BELL_STD) ** 2)
    expected = (model.expected_loss(t) * density).sum() / density.sum()
    assert bell == pytest.approx(float(expected), abs=0.05)
    assert abs(clipped - exact) > 0.15 and abs(bell - exact) > 0.15
    again = stratified_bound(model, ids, tokenizer, draws=4, seed=0)
    assert torch.equal(again.nats, estimates[0].nats)  # fixed and seeded: the same masks


def test_paired_difference_of_a_model_with_itself_is_zero_and_vs_ar_is_finite(tiny_model, blocks):
    model, tokenizer = tiny_model
    ids = blocks[:12]
    a = stratified_bound(model, ids, tokenizer, draws=2, seed=1)
    b = stratified_bound(model, ids, tokenizer, draws=2, seed=1)
    d = paired_difference(a, b)
    assert d.nats_per_token == 0.0 and d.standard_error == 0.0
    assert math.isfinite(a.standard_error) and a.standard_error > 0
    ar = causal_scores(causal_from_masked(model), ids, tokenizer)
    assert torch.equal(ar.tokens, a.tokens)  # the same tokens scored
    vs = paired_difference(a, ar)
    assert math.isfinite(vs.ratio) and vs.standard_error > 0
    with pytest.raises(ValueError, match="same blocks"):
        paired_difference(a, BlockScores(a.nats[:-1], a.tokens[:-1]))


# ------------------------------------------------------------------- the ways in


def test_the_command_line_and_the_form_take_the_recipe():
    import argparse

    from text_diffusion.commands.diffusion import register, spec_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "train",
            "--head-warmup-steps",
            "7",
            "--stratified-t",
            "--t-distribution",
            "bell",
            "--t-low",
            "0.2",
            "--t-high",
            "0.9",
            "--complementary-masks",
        ]
    )
    spec = spec_from_args(args)
    assert (spec.head_warmup_steps, spec.stratified_t, spec.t_distribution) == (7, True, "bell")
    assert (spec.t_low, spec.t_high, spec.complementary_masks) == (0.2, 0.9, True)
    unset = spec_from_args(parser.parse_args(["train", "--no-stratified-t"]))
    assert unset.stratified_t is False and unset.t_distribution == "clipped"  # the default

    from web.pages.new_run import GROUPS

    recipe = next(g for g in GROUPS if g.key == "recipe")
    kinds = {f.name: f.kind for f in recipe.fields}
    assert kinds == {
        "head_warmup_steps": "int",
        "stratified_t": "bool",
        "t_distribution": "choice",
        "t_low": "float",
        "t_high": "float",
        "complementary_masks": "bool",
    }
