"""The dashboard's part of the GUI ↔ node protocol: loading progress and the day-by-day history.

core/protocol.py gives each message its kind (a subclass per message), so these are the same frozen, checked,
typed-JSON records as the rest.

Events (node → GUI):
  progress   opening the model: downloading its files (bytes) and loading this PC's blocks (bytes and blocks)
  history    this PC's totals per day (tokens, time serving, traffic, gave/used), oldest first, kept across restarts

Standard library only (the GUI imports it). Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from potluck.core import typed_json

PROGRESS_STAGES = ("download", "load")  # download: the model's files from the hub; load: this PC's blocks
MAX_HISTORY_DAYS = 400
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise typed_json.TypedJsonError(message)  # core.protocol.decode turns it into a ProtocolError


@dataclass(frozen=True)
class ProgressFields:
    """How far opening the model is. `total_*` 0 means not known yet; `done_*` never passes a known total."""

    stage: str  # download | load
    done_bytes: int = 0
    total_bytes: int = 0
    done_blocks: int = 0  # load: blocks built so far (download: 0)
    total_blocks: int = 0  # load: blocks to build
    text: str = ""  # plain words: "Downloading model-00002-of-00004.safetensors", "Loading block 14"

    def __post_init__(self) -> None:
        _check(self.stage in PROGRESS_STAGES, f"stage must be one of {', '.join(PROGRESS_STAGES)}, got {self.stage!r}")
        for name in ("done_bytes", "total_bytes", "done_blocks", "total_blocks"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0")
        _check(not self.total_bytes or self.done_bytes <= self.total_bytes, "done_bytes must not pass total_bytes")
        _check(not self.total_blocks or self.done_blocks <= self.total_blocks, "done_blocks must not pass total_blocks")

    @property
    def fraction(self) -> float | None:
        """Done / total in [0, 1] (bytes first, else blocks), or None while the total is unknown."""
        if self.total_bytes:
            return self.done_bytes / self.total_bytes
        if self.total_blocks:
            return self.done_blocks / self.total_blocks
        return None


@dataclass(frozen=True)
class HistoryDay:
    """One local calendar day of this PC's contribution and use."""

    day: str  # YYYY-MM-DD, the PC's local date
    tokens_served: int = 0  # tokens this PC's blocks processed, for anyone
    tokens_for_others: int = 0  # of those, for other members' chats ("you gave")
    tokens_used: int = 0  # tokens this PC's own chats (and apps) generated through the swarm ("you used")
    serving_seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0

    def __post_init__(self) -> None:
        _check(_DAY.fullmatch(self.day) is not None, f"day must be YYYY-MM-DD, got {self.day!r}")
        for name in ("tokens_served", "tokens_for_others", "tokens_used", "serving_seconds", "bytes_up", "bytes_down"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0")


@dataclass(frozen=True)
class HistoryFields:
    days: tuple[HistoryDay, ...] = ()  # oldest first; days with nothing are left out

    def __post_init__(self) -> None:
        _check(len(self.days) <= MAX_HISTORY_DAYS, f"at most {MAX_HISTORY_DAYS} days")
