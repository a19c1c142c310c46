"""Every option name is declared once, in the contracts: the ML core's registries and the
command line's choices must hold exactly the declared names, in the declared order for the
command line."""

from __future__ import annotations

import argparse
from typing import get_args

import pytest

from shared.contracts.options import (
    MaskMode,
    MixedPrecision,
    Sampling,
    Schedule,
    Strategy,
    TrainObjective,
)
from text_diffusion.commands.diffusion import register
from worker.diffusion.sampling import SAMPLERS
from worker.diffusion.schedules import SCHEDULES, get_schedule
from worker.diffusion.strategies import STRATEGIES, get_strategy


@pytest.mark.parametrize(
    ("registry", "declared"),
    [(STRATEGIES, Strategy), (SCHEDULES, Schedule), (SAMPLERS, Sampling)],
    ids=["strategies", "schedules", "samplers"],
)
def test_registry_keys_are_the_declared_names(registry, declared):
    assert set(registry) == set(get_args(declared))


@pytest.mark.parametrize(("get", "declared"), [(get_strategy, Strategy), (get_schedule, Schedule)])
def test_unknown_names_are_refused_with_the_declared_choices(get, declared):
    with pytest.raises(ValueError, match=", ".join(get_args(declared))):
        get("nonesuch")


def _choices(command: str) -> dict[str, tuple[str, ...]]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        action.dest: tuple(action.choices)
        for action in sub.choices[command]._actions
        if action.choices is not None
    }


def test_cli_choices_are_the_declared_names():
    generate = _choices("generate")
    assert generate["strategy"] == get_args(Strategy)
    assert generate["schedule"] == get_args(Schedule)
    assert generate["sampling"] == get_args(Sampling)
    train = _choices("train")
    assert train["mask_mode"] == get_args(MaskMode)
    assert train["mixed_precision"] == get_args(MixedPrecision)
    assert train["objective"] == get_args(TrainObjective)
