"""A small synthetic English corpus the tests generate themselves (no third-party text)."""

from __future__ import annotations

import random

SUBJECTS = [
    "the old farmer",
    "a young girl",
    "the king",
    "my brother",
    "the small dog",
    "a tired horse",
]
VERBS = ["walked to", "looked at", "spoke about", "ran past", "waited near", "thought of"]
OBJECTS = ["the quiet river", "a green field", "the stone house", "the city gate", "a dark forest"]
ENDINGS = ["in the morning", "before the rain", "after supper", "with great care", "without a word"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """n sentences from a tiny grammar: regular enough that a 2-layer model learns it fast."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(part) for part in (SUBJECTS, VERBS, OBJECTS, ENDINGS)]
        s = " ".join(words) + "."
        out.append(s[0].upper() + s[1:])
    return out


def paragraphs(n: int, per: int = 5, seed: int = 0) -> list[str]:
    flat = sentences(n * per, seed)
    return [" ".join(flat[i * per : (i + 1) * per]) for i in range(n)]
