"""Unmasking schedules: end points, monotonicity, integer counts."""

from __future__ import annotations

from itertools import pairwise

import pytest

from worker.diffusion.schedules import SCHEDULES, get_schedule, masked_counts


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_end_points_and_monotone(name):
    schedule = get_schedule(name)
    assert schedule(0.0) == 1.0
    assert schedule(1.0) == 0.0
    values = [schedule(i / 200) for i in range(201)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in pairwise(values))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize(("n", "steps"), [(64, 10), (10, 10), (7, 3), (3, 8), (1, 1), (0, 4)])
def test_masked_counts(name, n, steps):
    counts = masked_counts(name, n, steps)
    assert len(counts) == steps
    assert counts[-1] == 0
    assert all(0 <= c <= n for c in counts)
    assert all(a >= b for a, b in pairwise([n, *counts]))
    if n >= steps:  # every pass commits at least one position
        assert all(a > b for a, b in pairwise([n, *counts]))


def test_linear_counts_are_even():
    assert masked_counts("linear", 64, 8) == [56, 48, 40, 32, 24, 16, 8, 0]


def test_cosine_commits_fewer_early_than_exponential():
    assert masked_counts("cosine", 64, 10)[0] > masked_counts("exponential", 64, 10)[0]
    assert masked_counts("loglinear", 64, 10)[0] >= masked_counts("cosine", 64, 10)[0]


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="cosine") as info:
        get_schedule("quadratic")
    assert "quadratic" in str(info.value)
