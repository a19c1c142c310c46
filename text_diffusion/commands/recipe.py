"""Flags for the training recipe's TrainSpec fields, built from the spec itself (their help
is the fields' descriptions, their choices and types the fields' types)."""

from __future__ import annotations

import argparse
from typing import Any, Literal, get_args, get_origin

from shared.contracts.specs import TrainSpec

RECIPE_FIELDS = (
    "head_warmup_steps",
    "stratified_t",
    "t_distribution",
    "t_low",
    "t_high",
    "complementary_masks",
)


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """--head-warmup-steps N, --stratified-t / --no-stratified-t, --t-distribution NAME, ...;
    unset flags are None, so the preset's (or the spec file's) value stands."""
    group = p.add_argument_group("training recipe (BENCHMARKS.md: Training recipe)")
    for name in RECIPE_FIELDS:
        info = TrainSpec.model_fields[name]
        flag = "--" + name.replace("_", "-")
        help = (info.description or "").replace("%", "%%") + f" (default {info.default})"
        if info.annotation is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help)
        elif get_origin(info.annotation) is Literal:
            group.add_argument(flag, choices=get_args(info.annotation), help=help)
        else:
            group.add_argument(flag, type=info.annotation, help=help)


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields given on the command line (None: not given)."""
    return {name: getattr(args, name, None) for name in RECIPE_FIELDS}
