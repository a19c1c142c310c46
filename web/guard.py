"""JSON bodies nested deeper than MAX_JSON_DEPTH are refused before they are parsed.

Python's JSON parser, and pydantic after it, recurse once per level: a body of 100,000
`[` would end in a RecursionError (a 500) after using the stack. Every body the API takes
is a few levels deep (`{"spec": {"grid": {"seeds": [0]}}}` is four), so the raw bytes are
scanned first, strings skipped, and a deeper body is answered 400 naming `body`.
"""

from __future__ import annotations

import re

from flask import request

from web.errors import ApiError

# Generous: the deepest body the API documents is four levels.
MAX_JSON_DEPTH = 32
# A JSON string (escapes included), or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in `raw` (brackets inside strings do not
    count); malformed JSON is left to the parser, which reports it."""
    depth = deepest = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest  # no need to read on
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def limit_json_depth() -> None:
    """Before any view of the API reads a JSON body: refuse one nested too deep."""
    if not request.is_json:
        return
    if json_depth(request.get_data(cache=True)) > MAX_JSON_DEPTH:
        raise ApiError(
            400,
            f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep",
            [{"field": "body", "reason": f"nested more than {MAX_JSON_DEPTH} levels"}],
        )
