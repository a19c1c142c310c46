"""Failure counters in fixed windows, shared by every web server (Redis) or kept in memory.

    throttle = Throttle("redis://...", prefix="td-auth:", window=300)
    wait = throttle.wait(("addr", "10.0.0.1"), limit=10)  # seconds until allowed, or 0
    throttle.fail(("addr", "10.0.0.1"))                   # count one failure

A key's failures are counted in the current window (`now // window`); once they reach the
limit, the key waits until that window ends. Only failures are counted, so a person who
types the right password is never throttled by their own successes. The clock is an
argument, so tests step time instead of sleeping.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from limits.storage import storage_from_string

from shared.settings import Settings

Key = tuple[str, ...]


def storage_uri(settings: Settings) -> str:
    """Redis when the deployment has one (shared by every web server), else memory."""
    url = settings.redis_url
    if url is None:
        return "memory://"
    if url.startswith("unix://"):
        return "redis+" + url  # the limits library's name for a Redis socket
    return url


class Throttle:
    """Failures per key per window; `wait` says how long a key that reached its limit waits."""

    def __init__(
        self,
        uri: str,
        *,
        prefix: str,
        window: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage_from_string(uri)
        self.prefix = prefix
        self.window = window
        self.clock = clock

    def _slot(self, key: Key) -> tuple[str, float]:
        """(storage key of this window, seconds left in it)."""
        now = self.clock()
        index = math.floor(now / self.window)
        # Hashed: a key holds what a client sent (a user name), never stored as typed.
        digest = hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:32]
        return f"{self.prefix}{key[0]}:{digest}:{index}", (index + 1) * self.window - now

    def wait(self, key: Key, limit: int) -> int:
        """Whole seconds until `key` may try again (0: it may now)."""
        slot, left = self._slot(key)
        if self.storage.get(slot) < limit:
            return 0
        return max(1, math.ceil(left))

    def fail(self, key: Key) -> None:
        slot, _ = self._slot(key)
        # Kept for two windows: long enough to be read in its own, then it expires.
        self.storage.incr(slot, 2 * self.window)
