"""A first route reads the DHT again before giving up: a record that shows up a moment later is found."""

from __future__ import annotations

import asyncio

import pytest

from potluck.core.client import swarm_view
from potluck.core.client.swarm_view import SwarmError, SwarmView
from potluck.core.swarm.records import ServerRecord, ServerState


def record(peer, start, end):
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=ServerState.ONLINE,
                        throughput_tokens_per_second=100.0, cache_tokens_left=10_000)


def view_with(monkeypatch, reads):
    """A view whose DHT answers the given reads in turn (each: {block: [records]}), counting them."""
    answers = iter(reads)
    seen = []

    async def fetch_records(_dht, _uid, blocks):
        answer = next(answers, reads[-1])
        seen.append(list(blocks))
        return {b: [r for r in answer if r.start_block <= b < r.end_block] for b in blocks}

    monkeypatch.setattr(swarm_view.swarm_dht, "fetch_records", fetch_records)
    monkeypatch.setattr(swarm_view, "ROUTE_RETRY_SECONDS", 0.01)
    view = SwarmView(None, None, "m@1", 4, self_peer_id="QmMe")  # pinged never: latencies pinned below
    view.pin_latency({"QmA": 1.0, "QmB": 1.0})
    return view, seen


@pytest.mark.parametrize("reads, found_on_read", [
    ([[record("QmA", 0, 2), record("QmB", 2, 4)]], 1),
    ([[record("QmB", 2, 4)], [record("QmA", 0, 2), record("QmB", 2, 4)]], 2),  # block 0 shows up on the second read
    ([[], [], [record("QmA", 0, 4)]], 3),
])
def test_a_late_record_is_found(monkeypatch, reads, found_on_read):
    view, seen = view_with(monkeypatch, reads)
    route = asyncio.run(view.route())
    assert [(span.start_block, span.end_block) for span, _record in route] in ([(0, 2), (2, 4)], [(0, 4)])
    assert len(seen) == found_on_read


def test_no_server_at_all_fails_after_the_last_read_with_the_missing_block(monkeypatch):
    view, seen = view_with(monkeypatch, [[record("QmB", 2, 4)]])
    with pytest.raises(SwarmError, match="block 0"):
        asyncio.run(view.route())
    assert len(seen) == swarm_view.ROUTE_ATTEMPTS
