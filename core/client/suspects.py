"""Servers this PC's spot checks caught computing wrong ("suspects"), shared by every client on this PC.

Where: `<data dir>/suspects.json` (mode 0600). Any client on this PC (the node's chat, `potluck generate`,
`potluck api`) adds to it when a check convicts a server (core/client/spot_checks.py); every client reads it when
it starts, so routing avoids a suspect from the first token; `potluck status` and the node's stats (the
dashboard's "suspect" flag) read it to show what this PC has seen.

Why a file on this PC and not a record in the swarm's DHT: each PC acts on its own evidence only. A published
accusation is one more thing a hostile member could make against an honest one (it would sign its own lies), and
acting on it would let one member push friends off everyone's routes. What this PC saw, it can show and act on.

A suspicion lasts `KEEP_SECONDS` (a day); then the server is routed through and checked like any other, so a
friend who fixed a broken PC is not shunned for ever. Light: standard library only.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from potluck.core import paths

log = logging.getLogger(__name__)

SUSPECTS_FILE = "suspects.json"
KEEP_SECONDS = 24 * 3600.0  # a suspicion is acted on this long after it was found
MAX_ENTRIES = 256  # the file keeps the newest this many
MAX_FILE_BYTES = 1 << 20  # a larger file is not read


@dataclass(frozen=True)
class Suspicion:
    """One server convicted by a spot check, with what was found."""

    peer_id: str
    name: str = ""  # the server's announced name
    model: str = ""  # the model's uid
    start_block: int = 0  # the blocks it computed wrong: [start_block, end_block)
    end_block: int = 0
    compute: str = ""  # what the blocks compute in ("float32", "bfloat16", "float32+int4")
    error: float = 0.0  # the relative difference from the accepted result (max over the step's tokens)
    tolerance: float = 0.0  # what the check allowed at this compute
    found_at: float = 0.0  # unix seconds
    detail: str = ""  # in words: "disagreed with 2 other servers on blocks 3-5"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Suspicion | None:
        """The suspicion in `data`, or None when it is not one (a damaged or foreign file is skipped, not fatal)."""
        if not isinstance(data, dict) or not isinstance(data.get("peer_id"), str) or not data["peer_id"]:
            return None
        values = {}
        for f in fields(cls):
            value = data.get(f.name, getattr(cls, f.name, None))
            kind = {"int": int, "float": float, "str": str}[f.type]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) or (kind is float and not math.isfinite(value)):
                return None
            values[f.name] = value
        return cls(**values)


def suspects_path() -> Path:
    """This PC's file of suspects (under POTLUCK_HOME when set)."""
    return paths.data_dir() / SUSPECTS_FILE


def read_suspects(path: Path | None = None, *, now: float | None = None,
                  keep_seconds: float = KEEP_SECONDS) -> dict[str, Suspicion]:
    """Suspicions in force (found less than `keep_seconds` ago), by peer id; {} when the file is missing or
    unreadable. The newest finding of a peer wins."""
    path = suspects_path() if path is None else Path(path)
    now = time.time() if now is None else now
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            log.warning("ignoring %s: larger than %d bytes", path, MAX_FILE_BYTES)
            return {}
        entries = json.loads(path.read_text(encoding="utf-8")).get("suspects", [])
    except (OSError, ValueError, AttributeError):
        return {}
    found: dict[str, Suspicion] = {}
    for entry in entries if isinstance(entries, list) else []:
        item = Suspicion.from_json(entry)
        if item is None or not now - keep_seconds <= item.found_at <= now + 60:
            continue
        if item.peer_id not in found or found[item.peer_id].found_at < item.found_at:
            found[item.peer_id] = item
    return found


def write_suspects(path: Path, items: dict[str, Suspicion]) -> None:
    """Replace the file with `items` (the newest MAX_ENTRIES), atomically, readable by this user only."""
    newest = sorted(items.values(), key=lambda s: s.found_at, reverse=True)[:MAX_ENTRIES]
    paths.ensure_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"format": 1, "suspects": [s.to_json() for s in newest]}, out, indent=1)
    os.replace(temporary, path)


class SuspectList:
    """The suspects a client acts on: those in this PC's file when it was made, and those it finds itself.

    `path` None keeps them in memory only (tests, or a client that must leave no trace). Writing never raises:
    a read-only disk costs the memory of other programs, not the generation."""

    def __init__(self, path: Path | None = None, *, clock: Callable[[], float] = time.time,
                 keep_seconds: float = KEEP_SECONDS):
        self.path = None if path is None else Path(path)
        self._clock, self.keep_seconds = clock, keep_seconds
        self._lock = threading.Lock()
        self._items: dict[str, Suspicion] = {}
        if self.path is not None:
            self._items = read_suspects(self.path, now=clock(), keep_seconds=keep_seconds)

    def add(self, suspicion: Suspicion) -> None:
        """Record a finding (and merge it into this PC's file)."""
        with self._lock:
            self._items[suspicion.peer_id] = suspicion
            if self.path is None:
                return
            try:
                merged = read_suspects(self.path, now=self._clock(), keep_seconds=self.keep_seconds)
                merged.update(self._items)
                write_suspects(self.path, merged)
            except OSError as e:
                log.warning("could not write %s: %s", self.path, e)

    def active(self) -> dict[str, Suspicion]:
        """Suspicions in force now, by peer id."""
        cutoff = self._clock() - self.keep_seconds
        with self._lock:
            return {peer: s for peer, s in self._items.items() if s.found_at >= cutoff}

    def peers(self) -> frozenset[str]:
        """Peer ids to avoid now (what routing takes as `avoid`)."""
        return frozenset(self.active())
