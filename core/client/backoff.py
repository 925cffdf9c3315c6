"""Peers the client skips for a while after they fail, with a back-off that doubles per failure.

The n-th failure in a row bans a peer for `base_seconds * 2**(n-1)` seconds, capped at `max_seconds`
(1 s, 2 s, 4 s, ... 60 s by default). A success resets the count and lifts the ban. Reporting a failure of a peer
that is still banned (say, several sessions noticing the same crash) does not escalate: the back-off grows only
for failures after the ban has run out. The clock is injectable (seconds, monotonic) so tests need no sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

DEFAULT_BASE_SECONDS = 1.0  # first ban of a peer
DEFAULT_MAX_SECONDS = 60.0  # longest ban, however often a peer fails


class BanList:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        base_seconds: float = DEFAULT_BASE_SECONDS,
        max_seconds: float = DEFAULT_MAX_SECONDS,
    ) -> None:
        if not callable(clock):
            raise ValueError("clock must be a callable returning seconds")
        for name, value in (("base_seconds", base_seconds), ("max_seconds", max_seconds)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if max_seconds < base_seconds:
            raise ValueError(f"max_seconds ({max_seconds}) must be >= base_seconds ({base_seconds})")
        self._clock = clock
        self._base_seconds = float(base_seconds)
        self._max_seconds = float(max_seconds)
        self._failures: dict[str, int] = {}  # consecutive failures per peer
        self._banned_until: dict[str, float] = {}  # clock time each ban ends

    def ban(self, peer_id: str) -> float:
        """Record a failure of `peer_id`; returns how many seconds from now it stays banned."""
        _check_peer(peer_id)
        now = self._clock()
        until = self._banned_until.get(peer_id)
        if until is not None and now < until:
            return until - now
        failures = self._failures.get(peer_id, 0) + 1
        self._failures[peer_id] = failures
        duration = min(self._max_seconds, self._base_seconds * 2.0 ** min(failures - 1, 64))
        self._banned_until[peer_id] = now + duration
        return duration

    def banned_peers(self) -> frozenset[str]:
        """Peers banned right now (pass this as `banned` to routing)."""
        now = self._clock()
        return frozenset(peer for peer, until in self._banned_until.items() if now < until)

    def record_success(self, peer_id: str) -> None:
        """The peer answered correctly: forget its failures and lift any ban."""
        _check_peer(peer_id)
        self._failures.pop(peer_id, None)
        self._banned_until.pop(peer_id, None)

    def failures(self, peer_id: str) -> int:
        """Consecutive failures recorded for the peer since its last success."""
        _check_peer(peer_id)
        return self._failures.get(peer_id, 0)


def _check_peer(peer_id: object) -> None:
    if not isinstance(peer_id, str) or not peer_id:
        raise ValueError(f"peer_id must be a non-empty string, got {peer_id!r}")
