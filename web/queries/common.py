"""Small conversions every query module uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def flat(spec: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """{"masking": {"mode": "grid"}} -> {"masking.mode": "grid"}, in the spec's own order."""
    out: dict[str, Any] = {}
    for key, value in (spec or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        else:
            out[name] = value
    return out
