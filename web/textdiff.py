"""Word-level differences between two texts, as the compare page shows paired samples."""

from __future__ import annotations

import difflib


def word_diff(a: str, b: str) -> list[dict[str, str]]:
    """b against a, word by word: [{"op": "equal" | "insert" | "delete", "text": ...}]."""
    wa, wb = a.split(), b.split()
    out: list[dict[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append({"op": "equal", "text": " ".join(wa[i1:i2])})
            continue
        if i2 > i1:
            out.append({"op": "delete", "text": " ".join(wa[i1:i2])})
        if j2 > j1:
            out.append({"op": "insert", "text": " ".join(wb[j1:j2])})
    return out
