"""Errors of the command line that every part of it raises (a leaf: imports nothing of
ours, so `cli`, the commands and the API client all depend on it and not on each other)."""

from __future__ import annotations

# Where `--url` mode finds the server and its token, when not given on the command line.
URL_ENV = "TD_URL"
TOKEN_ENV = "TD_API_TOKEN"


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2."""
