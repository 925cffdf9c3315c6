"""This PC's history, kept across restarts in one SQLite file under the data folder (core/paths.data_dir()).

The node adds what each stats period changed to the day it happened in (tokens served, of them for other members,
tokens used, time serving, bytes), remembers when each member was last seen online, and reads back days for the
dashboard's charts and this month's upload for the upload cap. The app keeps its chat conversations in the same
file (app/conversations.py), in tables of its own.

Standard library only. Opening creates the folder and the tables; nothing happens at import.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from potluck.core import paths
from potluck.core.protocol_desktop import HistoryDay

FILE_NAME = "potluck.sqlite3"
BUSY_TIMEOUT_SECONDS = 5.0  # the app and the node share the file
CHART_DAYS = 30  # what the node sends the dashboard


def history_path() -> Path:
    return paths.data_dir() / FILE_NAME


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the shared file (folder created private; write-ahead log so readers never wait long)."""
    paths.ensure_dir(path.parent)
    connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


@dataclass(frozen=True)
class Totals:
    """Counters of this node process since it started (they only grow while it runs)."""

    tokens_served: int = 0
    tokens_for_others: int = 0
    tokens_used: int = 0
    serving_seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0

    def minus(self, earlier: Totals) -> Totals:
        """What changed since `earlier`; a counter that went down (a new node process) counts from zero."""
        values = {}
        for f in dataclasses.fields(self):
            now, before = getattr(self, f.name), getattr(earlier, f.name)
            values[f.name] = now - before if now >= before else now
        return Totals(**values)

    def plus(self, other: Totals) -> Totals:
        return Totals(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})

    @property
    def empty(self) -> bool:
        return all(not getattr(self, f.name) for f in dataclasses.fields(self))


_COLUMNS = tuple(f.name for f in dataclasses.fields(Totals))


def day_key(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d")


class HistoryStore:
    """Days of totals and members last seen, in the shared SQLite file."""

    def __init__(self, path: Path | None = None):
        self.path = path or history_path()
        self._db = connect(self.path)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, tokens_served INTEGER NOT NULL, "
                             "tokens_for_others INTEGER NOT NULL, tokens_used INTEGER NOT NULL, serving_seconds REAL "
                             "NOT NULL, bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS members (swarm TEXT NOT NULL, peer_id TEXT NOT NULL, "
                             "name TEXT NOT NULL, last_seen REAL NOT NULL, PRIMARY KEY (swarm, peer_id))")

    def close(self) -> None:
        self._db.close()

    def add(self, day: str, change: Totals) -> None:
        """Add `change` to the totals of `day` (YYYY-MM-DD)."""
        if change.empty:
            return
        values = [getattr(change, name) for name in _COLUMNS]
        updates = ", ".join(f"{name} = {name} + excluded.{name}" for name in _COLUMNS)
        with self._db:
            self._db.execute(f"INSERT INTO days (day, {', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                             f"ON CONFLICT(day) DO UPDATE SET {updates}", [day, *values])

    def days(self, since_day: str = "") -> list[HistoryDay]:
        """Days from `since_day` on (all when empty), oldest first."""
        rows = self._db.execute(f"SELECT day, {', '.join(_COLUMNS)} FROM days WHERE day >= ? ORDER BY day",
                                [since_day]).fetchall()
        return [HistoryDay(day, *(max(0, v) for v in values)) for day, *values in rows]

    def month_bytes_up(self, now: dt.datetime) -> int:
        """Bytes sent in the calendar month of `now` (local days)."""
        first = day_key(now.replace(day=1))
        row = self._db.execute("SELECT COALESCE(SUM(bytes_up), 0) FROM days WHERE day >= ? AND day <= ?",
                               [first, day_key(now)]).fetchone()
        return int(row[0])

    def remember_members(self, swarm: str, seen: Iterable[tuple[str, str, float]]) -> None:
        """(peer id, name, last seen unix seconds) of members seen online; older news never overwrites newer."""
        rows = [(swarm, peer, name, when) for peer, name, when in seen]
        if not rows:
            return
        with self._db:
            self._db.executemany("INSERT INTO members (swarm, peer_id, name, last_seen) VALUES (?, ?, ?, ?) "
                                 "ON CONFLICT(swarm, peer_id) DO UPDATE SET name = excluded.name, last_seen = "
                                 "excluded.last_seen WHERE excluded.last_seen >= members.last_seen", rows)

    def members(self, swarm: str) -> dict[str, tuple[str, float]]:
        """peer id -> (name, last seen) for `swarm`."""
        rows = self._db.execute("SELECT peer_id, name, last_seen FROM members WHERE swarm = ?", [swarm]).fetchall()
        return {peer: (name, when) for peer, name, when in rows}


class Recorder:
    """Turns the node's growing counters into per-day additions, written at most every `flush_seconds`."""

    def __init__(self, store: HistoryStore, flush_seconds: float = 30.0):
        self.store, self.flush_seconds = store, flush_seconds
        self._last = Totals()
        self._pending: dict[str, Totals] = {}
        self._flushed_at: float | None = None

    def note(self, totals: Totals, now: dt.datetime, monotonic: float) -> None:
        """The counters as they are at `now`; what changed since the last note goes to `now`'s day."""
        change = totals.minus(self._last)
        self._last = totals
        if not change.empty:
            day = day_key(now)
            self._pending[day] = self._pending.get(day, Totals()).plus(change)
        if self._flushed_at is None:
            self._flushed_at = monotonic
        if monotonic - self._flushed_at >= self.flush_seconds:
            self.flush(monotonic)

    def flush(self, monotonic: float | None = None) -> None:
        pending, self._pending = self._pending, {}
        for day, change in sorted(pending.items()):
            self.store.add(day, change)
        if monotonic is not None:
            self._flushed_at = monotonic

    @property
    def pending(self) -> dict[str, Totals]:
        return dict(self._pending)

    def pending_bytes_up(self, now: dt.datetime, totals: Totals | None = None) -> int:
        """Bytes sent this month that are not written yet: noted, and (given the counters now) not even noted."""
        month = day_key(now)[:7]
        unnoted = totals.minus(self._last).bytes_up if totals is not None else 0
        return unnoted + sum(t.bytes_up for day, t in self._pending.items() if day.startswith(month))


def merged_days(stored: list[HistoryDay], pending: dict[str, Totals], since_day: str = "") -> list[HistoryDay]:
    """Stored days plus what is noted but not yet written, oldest first (the dashboard sees today live)."""
    by_day = {d.day: Totals(**{name: getattr(d, name) for name in _COLUMNS}) for d in stored}
    for day, change in pending.items():
        if day >= since_day:
            by_day[day] = by_day.get(day, Totals()).plus(change)
    return [HistoryDay(day, **dataclasses.asdict(t)) for day, t in sorted(by_day.items()) if not t.empty]
