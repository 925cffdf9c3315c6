"""Serving rules: when this PC serves, decided from data. Pure functions, table-tested in tests/node/test_rules.py.

The owner's rules (Settings in the app, `rules` in the node's settings, or `rules.json` in the config folder of a
PC without a screen): serve only after N minutes without keyboard or mouse input, not on battery, only inside a
weekly schedule, not past a monthly upload cap; and how many CPU threads the blocks may use. `decide` turns the
rules and what the PC says now (idle time, battery, local time, bytes sent this month) into serve-or-not and the
words that say why ("Paused until 18:00 (outside the schedule)"). The node acts on a change (core/node/upkeep.py):
it drains before it stops serving, as a pause does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from potluck.core.numbers import format_bytes

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_WINDOWS = 28
MAX_IDLE_MINUTES = 24 * 60
_TIME = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")


class RulesError(ValueError):
    """A rule is malformed; the message says which and how to write it."""


@dataclass(frozen=True)
class Window:
    """A weekly time window when serving is allowed: on `days` (0 = Monday), from `start_minute` (minutes after
    midnight) up to `end_minute` (exclusive). An end at or before the start runs past midnight into the next day."""

    days: tuple[int, ...]
    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not self.days or any(not 0 <= d <= 6 for d in self.days) or len(set(self.days)) != len(self.days):
            raise RulesError("a schedule window needs distinct days from 0 (Monday) to 6 (Sunday)")
        if not (0 <= self.start_minute < 1440 and 0 <= self.end_minute <= 1440):
            raise RulesError("a schedule window's times must lie in 00:00..24:00")

    def spans(self, day_start: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        """The [open, close) intervals this window gives on the calendar day beginning at `day_start` (if any)."""
        if day_start.weekday() not in self.days:
            return []
        begin = day_start + dt.timedelta(minutes=self.start_minute)
        end_day = day_start if self.end_minute > self.start_minute else day_start + dt.timedelta(days=1)
        return [(begin, end_day + dt.timedelta(minutes=self.end_minute))]


@dataclass(frozen=True)
class ServingRules:
    idle_minutes: int = 0  # serve only after this many minutes without input; 0 = whether in use or not
    serve_on_battery: bool = False  # False: stop serving while the PC runs on battery
    schedule: tuple[Window, ...] = ()  # serve only inside these weekly windows; () = at any time
    monthly_upload_cap_bytes: int = 0  # stop serving once this much was sent this month; 0 = no cap
    cpu_threads: int = 0  # threads the blocks may compute with; 0 = as many as the CPU has

    def __post_init__(self) -> None:
        if not 0 <= self.idle_minutes <= MAX_IDLE_MINUTES:
            raise RulesError(f"idle_minutes must be in 0..{MAX_IDLE_MINUTES}")
        if self.monthly_upload_cap_bytes < 0 or self.cpu_threads < 0:
            raise RulesError("monthly_upload_cap_bytes and cpu_threads must be >= 0")
        if len(self.schedule) > MAX_WINDOWS:
            raise RulesError(f"a schedule has at most {MAX_WINDOWS} windows")


@dataclass(frozen=True)
class Inputs:
    """What the PC says now. None means it cannot tell (no desktop session, no battery): the rule does not apply."""

    now: dt.datetime  # local time
    idle_seconds: float | None = None
    on_battery: bool | None = None
    month_bytes_up: int = 0


@dataclass(frozen=True)
class Decision:
    serve: bool
    rule: str = ""  # which rule stops serving: upload_cap | battery | schedule | idle ("" when serving)
    reason: str = ""  # plain words for the tray and the dashboard ("" when serving)
    until: dt.datetime | None = field(default=None, compare=False)  # when the rule lets go, if known


def decide(rules: ServingRules, inputs: Inputs) -> Decision:
    """Serve or not, and why. The first rule that says no wins: upload cap, battery, schedule, idle."""
    cap = rules.monthly_upload_cap_bytes
    if cap and inputs.month_bytes_up >= cap:
        first = _next_month(inputs.now)
        return Decision(False, "upload_cap", f"Paused until {_day_words(first, inputs.now)}: this month's upload cap "
                        f"({format_bytes(cap)}) is reached", first)
    if not rules.serve_on_battery and inputs.on_battery:
        return Decision(False, "battery", "Paused: on battery (serves again when plugged in)")
    if rules.schedule and not in_schedule(rules.schedule, inputs.now):
        opens = next_opening(rules.schedule, inputs.now)
        when = f" until {_when_words(opens, inputs.now)}" if opens is not None else ""
        return Decision(False, "schedule", f"Paused{when} (outside the schedule)", opens)
    idle_needed = rules.idle_minutes * 60
    if idle_needed and inputs.idle_seconds is not None and inputs.idle_seconds < idle_needed:
        return Decision(False, "idle", f"Paused while you use this PC (serves after {rules.idle_minutes} min "
                        "without input)")
    return Decision(True)


def in_schedule(schedule: tuple[Window, ...], now: dt.datetime) -> bool:
    """Whether `now` lies in one of the windows (a window from yesterday may run past midnight into today)."""
    today = _midnight(now)
    for day_start in (today - dt.timedelta(days=1), today):
        for window in schedule:
            if any(begin <= now < end for begin, end in window.spans(day_start)):
                return True
    return False


def next_opening(schedule: tuple[Window, ...], now: dt.datetime) -> dt.datetime | None:
    """The first time after `now` that a window opens (within the coming week), or None without windows."""
    today = _midnight(now)
    openings = [begin for offset in range(0, 8) for window in schedule
                for begin, _end in window.spans(today + dt.timedelta(days=offset)) if begin > now]
    return min(openings, default=None)


# ---------------------------------------------------------------------------------------------- words


def _midnight(now: dt.datetime) -> dt.datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_month(now: dt.datetime) -> dt.datetime:
    first = _midnight(now).replace(day=1)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def _when_words(moment: dt.datetime, now: dt.datetime) -> str:
    """'18:00' today, 'tomorrow 08:00', else 'Saturday 09:30'."""
    clock = moment.strftime("%H:%M")
    days = (_midnight(moment) - _midnight(now)).days
    if days == 0:
        return clock
    if days == 1:
        return f"tomorrow {clock}"
    return f"{DAY_NAMES[moment.weekday()]} {clock}"


def _day_words(moment: dt.datetime, now: dt.datetime) -> str:
    words = f"{moment.day} {moment.strftime('%B')}"
    return words if moment.year == now.year else f"{words} {moment.year}"


def schedule_words(schedule: tuple[Window, ...]) -> str:
    """'Mon–Fri 18:00–08:00; Sat, Sun all day' (for Settings)."""
    if not schedule:
        return "any time"
    return "; ".join(f"{_days_words(w.days)} {_window_time_words(w)}" for w in schedule)


def _days_words(days: tuple[int, ...]) -> str:
    ordered = sorted(days)
    if ordered == list(range(7)):
        return "every day"
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{DAY_NAMES[ordered[0]][:3]}–{DAY_NAMES[ordered[-1]][:3]}"
    return ", ".join(DAY_NAMES[d][:3] for d in ordered)


def _window_time_words(window: Window) -> str:
    if window.start_minute == 0 and window.end_minute in (0, 1440):
        return "all day"
    return f"{format_minute(window.start_minute)}–{format_minute(window.end_minute)}"


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# ---------------------------------------------------------------------------------------------- JSON


def parse_time(text: Any) -> int:
    """'18:00' -> 1080 minutes after midnight; '24:00' is the end of the day."""
    match = _TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    minute = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if not 0 <= minute <= 1440:
        raise RulesError(f"a time must be written HH:MM (00:00 to 24:00), got {text!r}")
    return minute


def parse_rules(value: Any) -> ServingRules:
    """Rules from their JSON form (what `rules_to_json` writes); RulesError says what is wrong."""
    if not isinstance(value, Mapping):
        raise RulesError("rules must be an object, e.g. {\"idle_minutes\": 10, \"serve_on_battery\": false}")
    unknown = sorted(set(value) - {"idle_minutes", "serve_on_battery", "schedule", "monthly_upload_cap_bytes",
                                   "cpu_threads"})
    if unknown:
        raise RulesError(f"unknown rule(s): {', '.join(unknown)}")
    numbers = {}
    for name in ("idle_minutes", "monthly_upload_cap_bytes", "cpu_threads"):
        number = value.get(name, 0)
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, int) or isinstance(number, bool):
            raise RulesError(f"{name} must be a whole number, got {number!r}")
        numbers[name] = number
    battery = value.get("serve_on_battery", False)
    if not isinstance(battery, bool):
        raise RulesError("serve_on_battery must be true or false")
    windows = value.get("schedule", [])
    if not isinstance(windows, list):
        raise RulesError("schedule must be a list of {\"days\": [0..6], \"start\": \"HH:MM\", \"end\": \"HH:MM\"}")
    schedule = []
    for item in windows:
        if not isinstance(item, Mapping) or not isinstance(item.get("days"), list):
            raise RulesError("each schedule window needs days (0 = Monday … 6 = Sunday), start and end")
        if any(not isinstance(d, int) or isinstance(d, bool) for d in item["days"]):
            raise RulesError("schedule days are numbers from 0 (Monday) to 6 (Sunday)")
        schedule.append(Window(tuple(item["days"]), parse_time(item.get("start")), parse_time(item.get("end"))))
    return ServingRules(serve_on_battery=battery, schedule=tuple(schedule), **numbers)


def rules_to_json(rules: ServingRules) -> dict:
    return {
        "idle_minutes": rules.idle_minutes, "serve_on_battery": rules.serve_on_battery,
        "schedule": [{"days": list(w.days), "start": format_minute(w.start_minute), "end": format_minute(w.end_minute)}
                     for w in rules.schedule],
        "monthly_upload_cap_bytes": rules.monthly_upload_cap_bytes, "cpu_threads": rules.cpu_threads,
    }
