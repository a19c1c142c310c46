"""Word-level differences between two texts, as the compare page shows paired samples."""

from __future__ import annotations

import difflib
from typing import Any


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


def split_prompt(prompt: str, text: str) -> tuple[str, str]:
    """(the prompt as `text` spells it, what was generated after it).

    A sample's text starts with its prompt, as the tokenizer gave it back (an uncased model
    lower-cases it), so the prompt's words are matched without case. A text that does not
    start with them is all generated: ("", text).
    """
    words, given = text.split(), prompt.split()
    n = len(given)
    if not n or [w.casefold() for w in words[:n]] != [w.casefold() for w in given]:
        return "", text
    return " ".join(words[:n]), " ".join(words[n:])


def generated_diff(prompt: str, base: str, text: str) -> dict[str, Any]:
    """`text` against `base`, both samples of `prompt`: the prompt as `text` shows it, and
    the word diff of the generated parts only (the prompt is shared, never a difference)."""
    head, rest = split_prompt(prompt, text)
    base_head, base_rest = split_prompt(prompt, base)
    if not head or not base_head:  # one of them does not start with the prompt
        return {"prompt": "", "diff": word_diff(base, text)}
    return {"prompt": head, "diff": word_diff(base_rest, rest)}
