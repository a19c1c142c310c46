"""Run names and tags: text people read in lists, so nothing that hides or reorders it.

Control characters (NUL, newlines, escapes) and the bidirectional overrides and isolates
(U+202A..U+202E, U+2066..U+2069, the marks U+200E, U+200F, U+061C) are refused: a name such
as "invoice\u202egpj.exe" reads as "invoiceexe.jpg". Other Unicode (accents, scripts,
emoji) is kept. Lengths are bounded so a list stays a list.
"""

from __future__ import annotations

import unicodedata

from shared.contracts.specs import SpecError

MAX_NAME_CHARS = 200
MAX_TAG_CHARS = 64
MAX_TAGS = 20
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def label_problem(value: str, max_chars: int) -> str | None:
    """Why `value` cannot be a name or tag, or None if it can."""
    if not value.strip():
        return "must not be empty"
    if len(value) > max_chars:
        return f"has {len(value)} characters; at most {max_chars}"
    for c in value:
        if c in BIDI_CONTROLS:
            return f"holds the bidirectional control character U+{ord(c):04X}, which reorders text"
        if unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            return f"holds the control character U+{ord(c):04X}"
    return None


def check_name(value: str) -> str:
    """`value` if it is a readable run name; ValueError (pydantic's field error) if not."""
    problem = label_problem(value, MAX_NAME_CHARS)
    if problem:
        raise ValueError(problem)
    return value


def check_tag(value: str) -> str:
    """`value` if it is a readable tag; ValueError if not."""
    problem = label_problem(value, MAX_TAG_CHARS)
    if problem:
        raise ValueError(problem)
    return value


def check_labels(name: str | None, tags: list[str] | None) -> None:
    """Both at once, for callers without a pydantic model (the job system, the CLI):
    `SpecError` naming `name` or `tags.N`."""
    if name is not None:
        problem = label_problem(name, MAX_NAME_CHARS)
        if problem:
            raise SpecError("name", problem)
    tags = tags or []
    if len(tags) > MAX_TAGS:
        raise SpecError("tags", f"{len(tags)} tags; at most {MAX_TAGS}")
    for i, tag in enumerate(tags):
        problem = label_problem(tag, MAX_TAG_CHARS)
        if problem:
            raise SpecError(f"tags.{i}", problem)
