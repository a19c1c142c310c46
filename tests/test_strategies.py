"""What the unmasking strategies mean: on hand-built distributions (no model), each ranked
strategy commits the positions it should, in the order it should; and the batched loop
(`generate._denoise`) matches a one-screen LLaDA-style reference denoiser sample for sample
on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from shared.contracts.grid import SamplerSpec
from worker.diffusion.generate import generate
from worker.diffusion.masking import special_ids
from worker.diffusion.sampling import sample_tokens
from worker.diffusion.schedules import get_schedule, masked_counts
from worker.diffusion.strategies import commit_ranked, get_strategy

# Five predicted positions, each a distribution over 5 tokens (sampled token: the first).
DISTRIBUTIONS = [
    [0.50, 0.50, 0.0, 0.0, 0.0],  # confidence .50, margin .00, entropy .693
    [0.60, 0.10, 0.10, 0.10, 0.10],  # confidence .60, margin .50, entropy 1.228
    [0.90, 0.025, 0.025, 0.025, 0.025],  # confidence .90, margin .875, entropy .464
    [0.55, 0.45, 0.0, 0.0, 0.0],  # confidence .55, margin .10, entropy .688
    [0.70, 0.30, 0.0, 0.0, 0.0],  # confidence .70, margin .40, entropy .611
]
# The order each strategy commits them in, worked out by hand from the comments above.
ORDER = {
    "confidence": [2, 4, 1, 3, 0],  # most likely sampled token first
    "margin": [2, 1, 4, 3, 0],  # widest gap between the two best first
    "entropy": [2, 4, 3, 0, 1],  # flattest distribution last
}


def _pass(distributions):
    """(logits (N, V), tokens (N,), probs (N,)) of one row whose N positions predict these."""
    p = torch.tensor(distributions, dtype=torch.float64).clamp(min=1e-12)
    logits = p.log().float()
    tokens = torch.zeros(len(distributions), dtype=torch.long)
    return logits, tokens, p[:, 0]


def _commit_order(name: str, distributions, threshold: float = 0.9) -> list[list[int]]:
    """Positions committed pass by pass when the schedule takes one per pass."""
    strategy = get_strategy(name, SamplerSpec(strategy=name, threshold=threshold))
    logits, tokens, probs = _pass(distributions)
    left = torch.ones(1, len(distributions), dtype=torch.bool)  # (1, W) still masked
    order = []
    while left.any():
        keep = left.sum(dim=1) - 1  # (1,): one commits
        rows = left[0]
        commit = commit_ranked(
            strategy, left, logits[rows], tokens[rows], probs[rows], keep, left.sum(dim=1)
        )
        order.append(commit[0].nonzero().squeeze(-1).tolist())
        left &= ~commit
    return order


@pytest.mark.parametrize("name", sorted(ORDER))
def test_a_ranked_strategy_commits_in_its_order(name):
    assert _commit_order(name, DISTRIBUTIONS) == [[i] for i in ORDER[name]]


def test_the_orders_differ_so_each_test_tells_them_apart():
    assert len({tuple(o) for o in ORDER.values()}) == len(ORDER)
    entropies = [-sum(p * math.log(p) for p in d if p) for d in DISTRIBUTIONS]
    assert sorted(range(5), key=lambda i: entropies[i]) == ORDER["entropy"]


def test_the_schedule_count_commits_the_best_together():
    """Two of five this pass: the two best by the strategy's score, left to right."""
    logits, tokens, probs = _pass(DISTRIBUTIONS)
    predicted = torch.ones(1, 5, dtype=torch.bool)
    keep = passes_left = torch.tensor([3])
    for name, order in ORDER.items():
        strategy = get_strategy(name)
        commit = commit_ranked(strategy, predicted, logits, tokens, probs, keep, passes_left)
        assert commit[0].nonzero().squeeze(-1).tolist() == sorted(order[:2]), name


def test_threshold_commits_everything_above_it_within_its_floor():
    logits, tokens, probs = _pass(DISTRIBUTIONS)
    predicted = torch.ones(1, 5, dtype=torch.bool)

    def commits(threshold: float, passes_left: int) -> list[int]:
        strategy = get_strategy("threshold", SamplerSpec(threshold=threshold))
        keep = torch.tensor([4])  # the schedule's one per pass: threshold ignores it
        commit = commit_ranked(
            strategy, predicted, logits, tokens, probs, keep, torch.tensor([passes_left])
        )
        return commit[0].nonzero().squeeze(-1).tolist()

    assert commits(0.65, passes_left=5) == [2, 4]  # the two above 0.65
    assert commits(0.95, passes_left=5) == [2]  # none above: the single best
    assert commits(0.95, passes_left=2) == [1, 2, 4]  # ceil(5 / 2) to finish in time
    assert commits(0.65, passes_left=1) == [0, 1, 2, 3, 4]  # the last pass takes all


def test_random_is_a_mode_of_the_loop_not_a_ranking():
    with pytest.raises(ValueError, match="ranks nothing"):
        get_strategy("random")


# ----------------------------------------------------------------------------- the oracle


def reference(model, tok, prompt: str, length: int, sampler: SamplerSpec, seed: int):
    """LLaDA's loop, one sequence, whole model each pass: split the slots into blocks, give
    each its share of the steps, and per pass commit the best-scored `masked - keep` of
    the block's masked positions. Returns the token ids."""
    g = torch.Generator().manual_seed(seed)
    prefix = tok(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    x = torch.tensor([tok.cls_token_id, *prefix, *[tok.mask_token_id] * length, tok.sep_token_id])
    slots = list(range(1 + len(prefix), 1 + len(prefix) + length))
    size = sampler.block_length or length
    blocks = [slots[i : i + size] for i in range(0, length, size)]
    base, extra = divmod(sampler.steps, len(blocks))
    strategy = get_strategy(sampler.strategy, sampler)
    for k, block in enumerate(blocks):
        passes = min(max(1, base + (k < extra)), len(block))
        for keep in masked_counts(get_schedule(sampler.schedule), len(block), passes):
            masked = torch.tensor([p for p in block if x[p] == tok.mask_token_id])
            logits = model(x[None]).logits[0, masked].float()  # (N, V)
            logits[:, special_ids(tok)] = float("-inf")
            owner = torch.zeros(len(masked), dtype=torch.long)
            tokens, probs = sample_tokens(
                logits, sampler.sampling, temperature=sampler.temperature, top_k=sampler.top_k,
                top_p=sampler.top_p, generators=[g], owner=owner,
            )  # fmt: skip
            best = strategy.score(logits, tokens, probs).argsort(descending=True, stable=True)
            chosen = best[: len(masked) - keep]
            x[masked[chosen]] = tokens[chosen]
    return x.tolist()


@pytest.mark.parametrize("strategy", ["confidence", "margin", "entropy"])
@pytest.mark.parametrize(
    ("schedule", "sampling", "block_length"),
    [("linear", "topk", None), ("cosine", "nucleus", 4), ("loglinear", "greedy", 3)],
)
def test_the_loop_matches_the_reference(tiny_model, strategy, schedule, sampling, block_length):
    model, tok = tiny_model
    sampler = SamplerSpec(
        steps=5, strategy=strategy, schedule=schedule, sampling=sampling,
        block_length=block_length, temperature=0.8,
    )  # fmt: skip
    prompts = ["The king", "", "And the city"]
    samples = generate(model, tok, prompts, sampler, length=9, num_samples=2, seed=4, batch_size=4)
    with torch.inference_mode():
        expected = [reference(model, tok, p, 9, sampler, 4 + j) for p in prompts for j in range(2)]
    assert [s.token_ids for s in samples] == expected
    assert len({tuple(e) for e in expected}) > 1  # the samples differ: the seeds reach them
