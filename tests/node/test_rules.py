"""Serving rules (core/node/rules.py): tables of what the PC says and what the rules decide, and their JSON form."""

from __future__ import annotations

import datetime as dt

import pytest

from potluck.core.node.rules import (
    Inputs,
    RulesError,
    ServingRules,
    Window,
    decide,
    in_schedule,
    next_opening,
    parse_rules,
    rules_to_json,
    schedule_words,
)

GIB = 2**30
# 2026-03-04 is a Wednesday
WED_10 = dt.datetime(2026, 3, 4, 10, 0)
WED_19 = dt.datetime(2026, 3, 4, 19, 0)
EVENINGS = (Window(days=(0, 1, 2, 3, 4), start_minute=18 * 60, end_minute=8 * 60),)  # Mon–Fri 18:00–08:00
WEEKEND = (Window(days=(5, 6), start_minute=0, end_minute=0),)  # all day


@pytest.mark.parametrize("rules, inputs, serve, rule, reason", [
    # the defaults: in use or not, at any time, but not on battery (as BOINC and Folding@home do)
    (ServingRules(), Inputs(now=WED_10, idle_seconds=0, on_battery=False), True, "", ""),
    # idle: in use -> no; idle long enough -> yes; no desktop (None) -> the rule does not apply
    (ServingRules(idle_minutes=10), Inputs(now=WED_10, idle_seconds=30), False, "idle",
     "Paused while you use this PC (serves after 10 min without input)"),
    (ServingRules(idle_minutes=10), Inputs(now=WED_10, idle_seconds=600), True, "", ""),
    (ServingRules(idle_minutes=10), Inputs(now=WED_10, idle_seconds=None), True, "", ""),
    # battery
    (ServingRules(), Inputs(now=WED_10, on_battery=True), False, "battery",
     "Paused: on battery (serves again when plugged in)"),
    (ServingRules(serve_on_battery=True), Inputs(now=WED_10, on_battery=True), True, "", ""),
    (ServingRules(), Inputs(now=WED_10, on_battery=None), True, "", ""),  # a desktop: no battery
    # schedule: outside says until when (today, tomorrow, a weekday)
    (ServingRules(schedule=EVENINGS), Inputs(now=WED_10), False, "schedule", "Paused until 18:00 (outside the schedule)"),
    (ServingRules(schedule=EVENINGS), Inputs(now=WED_19), True, "", ""),
    (ServingRules(schedule=EVENINGS), Inputs(now=dt.datetime(2026, 3, 5, 7, 59)), True, "", ""),  # past midnight
    (ServingRules(schedule=EVENINGS), Inputs(now=dt.datetime(2026, 3, 7, 12, 0)), False, "schedule",
     "Paused until Monday 18:00 (outside the schedule)"),  # Saturday noon
    (ServingRules(schedule=WEEKEND), Inputs(now=dt.datetime(2026, 3, 6, 23, 0)), False, "schedule",
     "Paused until tomorrow 00:00 (outside the schedule)"),
    (ServingRules(schedule=WEEKEND), Inputs(now=dt.datetime(2026, 3, 8, 23, 59)), True, "", ""),  # Sunday night
    # upload cap: reached -> until the 1st of next month
    (ServingRules(monthly_upload_cap_bytes=50 * GIB), Inputs(now=WED_10, month_bytes_up=50 * GIB), False,
     "upload_cap", "Paused until 1 April: this month's upload cap (50.0 GiB) is reached"),
    (ServingRules(monthly_upload_cap_bytes=50 * GIB), Inputs(now=WED_10, month_bytes_up=49 * GIB), True, "", ""),
    (ServingRules(monthly_upload_cap_bytes=GIB), Inputs(now=dt.datetime(2026, 12, 31, 9), month_bytes_up=GIB), False,
     "upload_cap", "Paused until 1 January 2027: this month's upload cap (1.0 GiB) is reached"),
    # the first rule that says no wins: cap, battery, schedule, idle
    (ServingRules(idle_minutes=5, schedule=EVENINGS, monthly_upload_cap_bytes=GIB),
     Inputs(now=WED_10, idle_seconds=0, on_battery=True, month_bytes_up=GIB), False, "upload_cap", None),
    (ServingRules(idle_minutes=5, schedule=EVENINGS), Inputs(now=WED_10, idle_seconds=0, on_battery=True), False,
     "battery", None),
    (ServingRules(idle_minutes=5, schedule=EVENINGS), Inputs(now=WED_10, idle_seconds=0), False, "schedule", None),
])
def test_decide(rules, inputs, serve, rule, reason):
    decision = decide(rules, inputs)
    assert (decision.serve, decision.rule) == (serve, rule)
    if reason is not None:
        assert decision.reason == reason


def test_schedule_until_is_the_next_opening():
    assert decide(ServingRules(schedule=EVENINGS), Inputs(now=WED_10)).until == dt.datetime(2026, 3, 4, 18, 0)
    assert next_opening((), WED_10) is None


@pytest.mark.parametrize("window, now, inside", [
    (Window((2,), 9 * 60, 17 * 60), dt.datetime(2026, 3, 4, 9, 0), True),  # the start is inside
    (Window((2,), 9 * 60, 17 * 60), dt.datetime(2026, 3, 4, 17, 0), False),  # the end is not
    (Window((2,), 22 * 60, 6 * 60), dt.datetime(2026, 3, 5, 5, 59), True),  # Wednesday night runs into Thursday
    (Window((2,), 22 * 60, 6 * 60), dt.datetime(2026, 3, 4, 5, 59), False),  # ... not Tuesday night
    (Window((2,), 0, 1440), dt.datetime(2026, 3, 4, 23, 59), True),
])
def test_in_schedule(window, now, inside):
    assert in_schedule((window,), now) is inside


@pytest.mark.parametrize("value, expected", [
    ({}, ServingRules()),
    ({"idle_minutes": 10, "serve_on_battery": True, "cpu_threads": 2, "monthly_upload_cap_bytes": 5e9},
     ServingRules(idle_minutes=10, serve_on_battery=True, cpu_threads=2, monthly_upload_cap_bytes=5_000_000_000)),
    ({"schedule": [{"days": [0, 1, 2, 3, 4], "start": "18:00", "end": "08:00"}]}, ServingRules(schedule=EVENINGS)),
    ({"schedule": [{"days": [5, 6], "start": "00:00", "end": "24:00"}]},
     ServingRules(schedule=(Window((5, 6), 0, 1440),))),
])
def test_parse_rules(value, expected):
    assert parse_rules(value) == expected
    assert parse_rules(rules_to_json(expected)) == expected


@pytest.mark.parametrize("value, words", [
    ([], "rules must be an object"),
    ({"idle": 5}, "unknown rule(s): idle"),
    ({"idle_minutes": "5"}, "idle_minutes must be a whole number"),
    ({"idle_minutes": -1}, "idle_minutes must be in 0..1440"),
    ({"serve_on_battery": "yes"}, "serve_on_battery must be true or false"),
    ({"schedule": {"days": [1]}}, "schedule must be a list"),
    ({"schedule": [{"days": [7], "start": "08:00", "end": "09:00"}]}, "distinct days from 0 (Monday) to 6"),
    ({"schedule": [{"days": [1], "start": "8 am", "end": "09:00"}]}, "a time must be written HH:MM"),
    ({"schedule": [{"days": [1], "start": "24:00", "end": "09:00"}]}, "times must lie in 00:00..24:00"),
    ({"cpu_threads": True}, "cpu_threads must be a whole number"),
])
def test_bad_rules_say_what_is_wrong(value, words):
    with pytest.raises(RulesError, match=None) as caught:
        parse_rules(value)
    assert words in str(caught.value)


@pytest.mark.parametrize("schedule, words", [
    ((), "any time"),
    (EVENINGS, "Mon–Fri 18:00–08:00"),
    (WEEKEND + (Window((0, 2), 12 * 60, 13 * 60 + 30),), "Sat, Sun all day; Mon, Wed 12:00–13:30"),
    ((Window(tuple(range(7)), 0, 1440),), "every day all day"),
])
def test_schedule_words(schedule, words):
    assert schedule_words(schedule) == words
