"""Jinja filters of the pages: durations, numbers, query strings."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from markupsafe import Markup, escape


def duration(seconds: float | None) -> str:
    """12 -> '12s', 754 -> '12m 34s', 7260 -> '2h 01m'."""
    if seconds is None:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def num(value: Any, digits: int = 3) -> str:
    """Numbers for tables: 3 significant digits, thousands separated; '' for None."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def with_page(args: Any, page: int) -> str:
    """The current query string with `page` replaced."""
    items = [(k, v) for k, v in args.items(multi=True) if k != "page"]
    return urlencode([*items, ("page", page)])


def with_args(args: Any, **changes: Any) -> str:
    """The current query string with some keys replaced (None removes a key)."""
    items = [(k, v) for k, v in args.items(multi=True) if k not in changes]
    items += [(k, v) for k, v in changes.items() if v is not None]
    return urlencode(items)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def breakable(name: str) -> Markup:
    """A snake_case or dotted name that may wrap after each `_` and `.` (a table header
    such as max_token_share then takes the width of its longest part, not of the name)."""
    text = str(escape(name))
    return Markup(text.replace("_", "_<wbr>").replace(".", ".<wbr>"))


# Stored metric names shown under another label: `entropy` in a sample set's metrics is the
# pooled word-level entropy (`sample_metrics`), which would otherwise read as the judged
# per-sample token entropy shown beside the judge perplexity.
METRIC_LABELS = {"entropy": "word entropy"}


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def human_quality(reference: dict[str, Any]) -> dict[str, Any]:
    """A human reference's measures as the `quality` macro reads a sample set's."""
    return {**reference, "entropy_tokens": "judge"}


def register(app: Flask) -> None:
    app.jinja_env.filters.update(
        duration=duration,
        num=num,
        with_page=with_page,
        with_args=with_args,
        pretty=pretty,
        breakable=breakable,
        metric_label=metric_label,
        human_quality=human_quality,
    )
