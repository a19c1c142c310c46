"""Pictures: console renderings and PNGs of masking, schedules and trajectories."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from worker.diffusion.schedules import SCHEDULES
from worker.diffusion.viz import (
    plot_masking,
    plot_schedules,
    plot_trajectory,
    render_masking,
    render_trajectory,
)

TEXT = "The old farmer walked to the quiet river in the morning."


def test_render_masking_shows_masks_and_prefix(tiny_model):
    _, tokenizer = tiny_model
    out = render_masking(tokenizer, TEXT, ratios=(0.1, 0.5, 1.0), prefix_length=4)
    lines = out.splitlines()
    assert len(lines) == 4  # header + one per ratio
    assert tokenizer.mask_token in out
    prefix = tokenizer.decode(tokenizer(TEXT)["input_ids"][1:4])
    assert all(prefix in line for line in lines)
    # at 100% everything after the prefix is masked
    assert lines[-1].split("| ", 1)[1].startswith(prefix + tokenizer.mask_token)
    assert "river" not in lines[-1]
    assert render_masking(tokenizer, TEXT, prefix_length=4) == out  # fixed seed


def test_plot_masking_writes_png(tiny_model, tmp_path):
    _, tokenizer = tiny_model
    path = plot_masking(tokenizer, TEXT, tmp_path / "masking.png", prefix_length=4)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_plot_schedules_writes_png(tmp_path):
    """A PNG with a curve per schedule: a second schedule adds pixels of its own colour."""
    import matplotlib.image
    import numpy as np

    names = list(SCHEDULES)
    one = plot_schedules(tmp_path / "one.png", steps=8, names=names[:1])
    two = plot_schedules(tmp_path / "two.png", steps=8, names=names[:2])
    assert two.read_bytes()[:4] == b"\x89PNG"
    a, b = matplotlib.image.imread(one), matplotlib.image.imread(two)  # (H, W, 4)
    assert a.shape == b.shape and a.shape[0] > 100 and a.shape[1] > 100

    def colours(img):
        return {tuple(px) for px in np.round(img[..., :3] * 255).astype(int).reshape(-1, 3)}

    assert len(colours(b) - colours(a)) > 10  # the second line (and its legend entry)
    with pytest.raises(ValueError, match="steps"):
        plot_schedules(tmp_path / "none.png", steps=0)


# Duck-typed stand-ins for generate.TrajectoryStep / generate.Sample.
@dataclass
class Step:
    tokens: list[int]
    confidences: list[float]


@dataclass
class FakeSample:
    prompt: str
    text: str
    completion: str
    token_ids: list[int]
    given: list[bool]
    seed: int
    forward_passes: int
    committed_at: list[int]
    trajectory: list[Step] | None


def _sample(tokenizer, with_trajectory: bool) -> FakeSample:
    """`<s> The old farmer | walked to the river . </s>`, generated in two passes."""
    prompt_ids = tokenizer("The old farmer", add_special_tokens=False)["input_ids"]
    gen_ids = tokenizer(" walked to the river.", add_special_tokens=False)["input_ids"]
    ids = [tokenizer.cls_token_id, *prompt_ids, *gen_ids, tokenizer.sep_token_id]
    given = [True] * (1 + len(prompt_ids)) + [False] * len(gen_ids) + [True]
    half = len(gen_ids) // 2
    committed = [-1] * (1 + len(prompt_ids)) + [0] * half + [1] * (len(gen_ids) - half) + [-1]
    steps = []
    for p in range(2):
        tokens = [
            t if g or c <= p else tokenizer.mask_token_id
            for t, g, c in zip(ids, given, committed, strict=True)
        ]
        confs = [0.0 if g or c > p else 0.8 for g, c in zip(given, committed, strict=True)]
        steps.append(Step(tokens, confs))
    return FakeSample(
        prompt="The old farmer",
        text=tokenizer.decode(ids, skip_special_tokens=True),
        completion=" walked to the river.",
        token_ids=ids,
        given=given,
        seed=0,
        forward_passes=2,
        committed_at=committed,
        trajectory=steps if with_trajectory else None,
    )


@pytest.mark.parametrize("with_trajectory", [True, False])
def test_render_trajectory(tiny_model, with_trajectory):
    _, tokenizer = tiny_model
    sample = _sample(tokenizer, with_trajectory)
    out = render_trajectory(tokenizer, sample)
    lines = out.splitlines()
    assert len(lines) == 1 + 2 + 1  # header, two passes, final
    assert tokenizer.mask_token in lines[1] and "The old farmer" in lines[1]
    assert tokenizer.mask_token not in lines[2]
    assert lines[-1].endswith("The old farmer walked to the river.")


def test_plot_trajectory_writes_png(tiny_model, tmp_path):
    _, tokenizer = tiny_model
    path = plot_trajectory(tokenizer, _sample(tokenizer, True), tmp_path / "trajectory.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
