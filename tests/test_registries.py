"""Every option name is declared once, in the contracts: the ML core's registries must hold
exactly the declared names (the command line's choices are built from the specs:
tests/test_spec_surfaces.py)."""

from __future__ import annotations

from typing import get_args

import pytest

from shared.contracts.options import (
    Sampling,
    Schedule,
    Strategy,
)
from worker.diffusion.sampling import SAMPLERS
from worker.diffusion.schedules import SCHEDULES, get_schedule
from worker.diffusion.strategies import RANDOM, STRATEGIES, get_strategy

# The ranked strategies, and `random`: the denoising loop's re-masking mode.
WITH_RANDOM = {**STRATEGIES, RANDOM: None}


@pytest.mark.parametrize(
    ("registry", "declared"),
    [(WITH_RANDOM, Strategy), (SCHEDULES, Schedule), (SAMPLERS, Sampling)],
    ids=["strategies", "schedules", "samplers"],
)
def test_registry_keys_are_the_declared_names(registry, declared):
    assert set(registry) == set(get_args(declared))


@pytest.mark.parametrize(("get", "declared"), [(get_strategy, Strategy), (get_schedule, Schedule)])
def test_unknown_names_are_refused_with_the_declared_choices(get, declared):
    with pytest.raises(ValueError, match=", ".join(get_args(declared))):
        get("nonesuch")
