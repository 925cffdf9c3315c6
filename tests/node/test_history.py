"""The history file (core/node/history.py): per-day totals across restarts, members last seen, this month's upload."""

from __future__ import annotations

import datetime as dt

import pytest

from potluck.core.node.history import HistoryStore, Recorder, Totals, merged_days
from potluck.core.protocol_desktop import HistoryDay


@pytest.mark.parametrize("now, before, change", [
    (Totals(tokens_served=10, bytes_up=5), Totals(tokens_served=4, bytes_up=5), Totals(tokens_served=6)),
    # a new node process: its counters start again from zero, and count as new
    (Totals(tokens_served=3, serving_seconds=2.0), Totals(tokens_served=50, serving_seconds=90.0),
     Totals(tokens_served=3, serving_seconds=2.0)),
    (Totals(), Totals(), Totals()),
])
def test_totals_minus(now, before, change):
    assert now.minus(before) == change


def test_days_add_up_and_survive_a_restart(tmp_path):
    path = tmp_path / "data" / "potluck.sqlite3"
    store = HistoryStore(path)
    store.add("2026-03-04", Totals(tokens_served=10, tokens_for_others=4, tokens_used=2, serving_seconds=60.0,
                                   bytes_up=1000, bytes_down=500))
    store.add("2026-03-04", Totals(tokens_served=5, tokens_for_others=5, bytes_up=24))
    store.add("2026-03-05", Totals(tokens_used=7))
    store.add("2026-03-06", Totals())  # nothing: no row
    store.close()
    again = HistoryStore(path)
    assert again.days() == [
        HistoryDay("2026-03-04", tokens_served=15, tokens_for_others=9, tokens_used=2, serving_seconds=60.0,
                   bytes_up=1024, bytes_down=500),
        HistoryDay("2026-03-05", tokens_used=7),
    ]
    assert [d.day for d in again.days("2026-03-05")] == ["2026-03-05"]


def test_month_upload_counts_only_this_month(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.add("2026-02-28", Totals(bytes_up=100))
    store.add("2026-03-01", Totals(bytes_up=7))
    store.add("2026-03-04", Totals(bytes_up=3))
    store.add("2026-04-01", Totals(bytes_up=1000))
    assert store.month_bytes_up(dt.datetime(2026, 3, 4, 12)) == 10


def test_members_last_seen_keeps_the_newest(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.remember_members("swarm1", [("ana", "Ana", 100.0), ("ben", "Ben", 50.0)])
    store.remember_members("swarm1", [("ana", "Ana's PC", 200.0), ("ben", "old news", 10.0)])
    store.remember_members("swarm2", [("cho", "Cho", 5.0)])
    assert store.members("swarm1") == {"ana": ("Ana's PC", 200.0), "ben": ("Ben", 50.0)}


def test_recorder_splits_by_day_and_writes_in_batches(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    recorder = Recorder(store, flush_seconds=30.0)
    late = dt.datetime(2026, 3, 4, 23, 59, 50)
    recorder.note(Totals(tokens_served=10, bytes_up=100), late, monotonic=0.0)
    recorder.note(Totals(tokens_served=25, bytes_up=150), late + dt.timedelta(seconds=20), monotonic=20.0)
    assert store.days() == []  # not written yet
    assert recorder.pending_bytes_up(late + dt.timedelta(seconds=20)) == 150  # both days are in March
    live = merged_days(store.days(), recorder.pending)
    assert [(d.day, d.tokens_served) for d in live] == [("2026-03-04", 10), ("2026-03-05", 15)]
    recorder.note(Totals(tokens_served=25, bytes_up=150), late + dt.timedelta(seconds=40), monotonic=40.0)
    assert [(d.day, d.tokens_served, d.bytes_up) for d in store.days()] == [("2026-03-04", 10, 100),
                                                                           ("2026-03-05", 15, 50)]
    assert recorder.pending == {}


def test_this_months_upload_includes_what_is_not_noted_yet(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.add("2026-03-01", Totals(bytes_up=1000))
    recorder = Recorder(store)
    now = dt.datetime(2026, 3, 4, 12)
    recorder.note(Totals(bytes_up=300), now, monotonic=0.0)
    assert recorder.pending_bytes_up(now) == 300
    assert recorder.pending_bytes_up(now, Totals(bytes_up=450)) == 450  # 150 sent since the last note
    assert store.month_bytes_up(now) + recorder.pending_bytes_up(now, Totals(bytes_up=450)) == 1450
