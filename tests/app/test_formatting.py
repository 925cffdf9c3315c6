"""Plain-words formatting and the tray's status line, as tables."""

from __future__ import annotations

import pytest

from potluck.app.coverage_strip import coverage_summary, gap_ranges
from potluck.app.formatting import (
    block_range,
    format_count,
    format_duration,
    friends_online,
    last_seen_text,
    status_line,
)
from potluck.core.protocol import Member, NodeState, Stats


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3 * 3600 + 17 * 60 + 5, "3 h 17 min"), (2 * 86400 + 3600, "2 d 1 h"),
    (-5, "0 s"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("count", "text"), [(0, "0"), (12345, "12,345"), (9_999_999, "9,999,999"), (24_000_000, "24.0 M")])
def test_format_count(count, text):
    assert format_count(count) == text


@pytest.mark.parametrize(("start", "end", "text"), [(12, 24, "12–23"), (0, 1, "0"), (5, 5, "none"), (7, 3, "none")])
def test_block_range_counts_both_ends(start, end, text):
    assert block_range(start, end) == text


def member(peer_id: str, online: bool = True) -> Member:
    return Member(peer_id=peer_id, name=peer_id, state="online", start_block=0, end_block=1, online=online)


SWARM = Stats(start_block=12, end_block=24, total_blocks=80, peer_id="me", active_sessions=2,
              members=(member("me"), member("ana"), member("ben"), member("cho"), member("dan", online=False)))


@pytest.mark.parametrize(("state", "stats", "detail", "text"), [
    (NodeState.SERVING, SWARM, "", "Serving blocks 12–23 of 80 · 3 friends online"),
    (NodeState.SERVING, Stats(start_block=3, end_block=4, total_blocks=8, members=(member("a"),), peer_id="me"), "",
     "Serving blocks 3 of 8 · 1 friend online"),
    (NodeState.SERVING, None, "", "Serving · no friends online yet"),
    (NodeState.PAUSED, SWARM, "", "Paused · 3 friends online"),
    (NodeState.PAUSED, SWARM, "Paused by you", "Paused · 3 friends online"),
    # a serving rule says why (tray tooltip and menu, dashboard)
    (NodeState.PAUSED, SWARM, "Paused until 18:00 (outside the schedule)",
     "Paused until 18:00 (outside the schedule) · 3 friends online"),
    (NodeState.PAUSED, None, "Paused: on battery (serves again when plugged in)",
     "Paused: on battery (serves again when plugged in) · no friends online yet"),
    # friends were there: nobody online now is not "yet"
    (NodeState.SERVING, Stats(peer_id="me", members=(member("me"), member("ana", online=False))), "",
     "Serving · no friends online"),
    (NodeState.DRAINING, SWARM, "", "Finishing 2 conversations before pausing"),
    (NodeState.DRAINING, None, "", "Finishing conversations before pausing"),
    (NodeState.STARTING, None, "Loading blocks 12–23", "Loading blocks 12–23"),
    (NodeState.STARTING, None, "", "Starting…"),
    (NodeState.STOPPING, None, "", "Stopping…"),
    (NodeState.FAILED, SWARM, "out of memory", "Stopped by an error"),
    (NodeState.STOPPED, None, "", "Not serving"),
])
def test_status_line(state, stats, detail, text):
    assert status_line(state, stats, detail) == text


@pytest.mark.parametrize(("last_seen", "now", "text"), [
    (0.0, 1000.0, "never"), (990.0, 1000.0, "now"), (1000.0 - 240, 1000.0, "4 min ago"),
    (20000.0 - 3 * 3600, 20000.0, "3 h 0 min ago"),
])
def test_last_seen_text(last_seen, now, text):
    assert last_seen_text(last_seen, now) == text


def test_friends_online_does_not_count_this_pc_or_offline_members():
    assert friends_online(SWARM) == 3
    assert friends_online(None) == 0


@pytest.mark.parametrize(("coverage", "gaps", "summary"), [
    ((), [], "The swarm has not reported its blocks yet."),
    ((2, 2, 3), [], "Every block has at least two servers."),
    ((2, 1, 1), [], "Every block has a server; 2 of 3 have only one."),
    ((1, 0, 1), [(1, 2)], "1 block has no server (1): the swarm cannot answer until someone hosts them."),
    ((0, 0, 1, 0, 0, 0), [(0, 2), (3, 6)],
     "5 blocks have no server (0–1, 3–5): the swarm cannot answer until someone hosts them."),
])
def test_coverage_gaps_and_summary(coverage, gaps, summary):
    assert gap_ranges(coverage) == gaps
    assert coverage_summary(coverage) == summary
