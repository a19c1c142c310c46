"""Argument types shared by the command parsers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def csv_list(kind: Callable[[str], Any]) -> Callable[[str], list]:
    """An argparse type: "a,b,c" -> [kind("a"), kind("b"), kind("c")], empty items dropped."""

    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list: {text!r}") from exc

    return parse
