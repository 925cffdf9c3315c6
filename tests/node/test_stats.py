"""Tables for what the node reports: block words, coverage alerts, members, stats, and the chat's mappings."""

from __future__ import annotations

import pytest

from potluck.core import protocol
from potluck.core.node import stats
from potluck.core.node.stats import Contribution, Me
from potluck.core.protocol import AlertLevel, NodeState
from potluck.core.swarm.records import ServerRecord, ServerState, online_per_block

ME = "12D3KooWme"


def record(peer: str, start: int, end: int, state: ServerState = ServerState.ONLINE, name: str = "") -> ServerRecord:
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=state, name=name or peer[-3:])


def by_block(total: int, *records: ServerRecord) -> dict[int, list[ServerRecord]]:
    return {b: [r for r in records if r.hosts(b)] for b in range(total)}


@pytest.mark.parametrize("blocks, words", [
    ([], "No blocks"),
    ([12], "Block 12"),
    ([12, 13, 14, 15], "Blocks 12–15"),
    ([9, 3, 7, 8], "Blocks 3, 7–9"),
    ([4, 4, 5], "Blocks 4–5"),
    ([0, 2], "Blocks 0, 2"),
])
def test_blocks_words(blocks, words):
    assert stats.blocks_words(blocks) == words


@pytest.mark.parametrize("start, end, words", [(12, 24, "blocks 12–23"), (3, 4, "block 3"), (5, 5, "no blocks")])
def test_span_words(start, end, words):
    assert stats.span_words(start, end) == words


@pytest.mark.parametrize("previous, current, expected", [
    # first look: every gap is critical, one replica is not worth a warning yet
    (None, [2, 2, 1, 1], []),
    (None, [1, 0, 0, 1], [("critical", "Blocks 1–2 have no server left", (1, 2))]),
    # a block losing its last server
    ([1, 1, 2, 2], [1, 0, 2, 2], [("critical", "Block 1 has no server left", (1,))]),
    # down to one replica
    ([2, 2, 2, 2], [2, 1, 1, 2], [("warning", "Blocks 1–2 have only one server left", (1, 2))]),
    # both at once, and gaps that were already known are not repeated
    ([0, 2, 2, 3], [0, 0, 1, 3], [("critical", "Block 1 has no server left", (1,)),
                                  ("warning", "Block 2 has only one server left", (2,))]),
    # nothing changed: nothing said (de-duplicated)
    ([0, 1, 1, 0], [0, 1, 1, 0], []),
    # 0 -> 1 is a recovery, not a warning
    ([0, 0, 2, 2], [1, 2, 2, 2], [("info", "Blocks 0–1 are served again", (0, 1))]),
    # more replicas are never news
    ([1, 1], [2, 3], []),
    # another model (other length): a first look
    ([2, 2], [0, 2, 2], [("critical", "Block 0 has no server left", (0,))]),
])
def test_coverage_alerts(previous, current, expected):
    got = [(a.level.value, a.text, a.blocks) for a in stats.coverage_alerts(previous, current)]
    assert got == expected


def test_coverage_alerts_are_protocol_alerts():
    (alert,) = stats.coverage_alerts([1], [0])
    assert protocol.decode_event(protocol.encode(alert)) == alert
    assert alert.level is AlertLevel.CRITICAL


def test_coverage_counts_only_online_servers():
    records = by_block(4, record("a", 0, 2), record("b", 1, 4, ServerState.DRAINING), record("c", 1, 3),
                       record("d", 3, 4, ServerState.JOINING), record("e", 0, 4, ServerState.OFFLINE))
    assert online_per_block(4, records) == (1, 2, 1, 0)
    assert online_per_block(2, {}) == (0, 0)


@pytest.mark.parametrize("state, member_state, online, hosted", [
    (NodeState.SERVING, "online", True, (2, 4)),
    (NodeState.DRAINING, "draining", True, (2, 4)),
    (NodeState.STARTING, "joining", True, (0, 0)),
    (NodeState.PAUSED, "paused", True, (0, 0)),
    (NodeState.FAILED, "failed", True, (0, 0)),
    (NodeState.STOPPING, "offline", False, (0, 0)),
])
def test_this_pc_is_listed_first_as_its_node_state_says(state, member_state, online, hosted):
    records = [record("friend", 0, 2, name="Ana"), record(ME, 2, 4, ServerState.OFFLINE, name="stale")]
    me = Me(peer_id=ME, name="Sam's desktop", state=state, start_block=2, end_block=4)
    got = stats.members(records, me)
    assert [m.peer_id for m in got] == [ME, "friend"]  # our own record (possibly stale) never shows twice
    assert (got[0].name, got[0].state, got[0].online, (got[0].start_block, got[0].end_block)) == \
           ("Sam's desktop", member_state, online, hosted)


def test_members_one_per_peer_and_offline_ones_marked():
    records = [record("a", 0, 2, name="Ana"), record("a", 0, 2, name="Ana"), record("b", 2, 4, ServerState.OFFLINE)]
    got = stats.members(records, None)
    assert [(m.peer_id, m.state, m.online) for m in got] == [("a", "online", True), ("b", "offline", False)]


def test_build_stats_from_counters_and_records():
    done = Contribution(tokens_served=100, sessions_served=3, bytes_up=10, bytes_down=20, uptime_seconds=50.0)
    now = Contribution(start_block=2, end_block=4, tokens_served=5, sessions_served=1, active_sessions=1, bytes_up=1,
                       bytes_down=2, uptime_seconds=7.04, block_tokens_per_second=100.0)
    view = by_block(4, record("friend", 0, 3), record(ME, 2, 4))
    got = stats.build_stats(done.plus(now), total_blocks=4, memory_used_bytes=123, memory_free_bytes=-5,
                            tokens_used=9, by_block=view, me=Me(ME, "Sam", NodeState.SERVING, 2, 4))
    assert (got.start_block, got.end_block, got.total_blocks) == (2, 4, 4)
    assert (got.tokens_served, got.sessions_served, got.active_sessions) == (105, 4, 1)
    assert (got.bytes_up, got.bytes_down, got.uptime_seconds) == (11, 22, 57.0)
    assert (got.memory_used_bytes, got.memory_free_bytes, got.tokens_used) == (123, 0, 9)
    assert got.throughput_tokens_per_second == 50.0  # one block at 100 tokens/s, two blocks hosted
    assert got.coverage == (1, 1, 2, 1)
    assert got.peer_id == ME and [m.peer_id for m in got.members] == [ME, "friend"]
    assert protocol.decode_event(protocol.encode(got)) == got


def test_build_stats_before_the_swarm_was_read():
    got = stats.build_stats(Contribution(), total_blocks=0, memory_used_bytes=0, memory_free_bytes=0, tokens_used=0,
                            by_block=None, me=None)
    assert got == protocol.Stats()


@pytest.mark.parametrize("per_block, blocks, expected", [(100.0, 4, 25.0), (100.0, 0, 0.0), (0.0, 3, 0.0)])
def test_throughput(per_block, blocks, expected):
    assert stats.throughput_tokens_per_second(per_block, blocks) == expected


def test_temperature_zero_is_greedy():
    cmd = protocol.Generate(request_id="r", prompt="hi", temperature=0.0, top_p=0.5, top_k=3, seed=4, max_new_tokens=7)
    assert stats.sampling_kwargs(cmd) == {"max_new_tokens": 7, "repetition_penalty": 1.0, "do_sample": False}


def test_sampling_settings_pass_through():
    cmd = protocol.Generate(request_id="r", prompt="hi", temperature=0.7, top_p=0.9, top_k=0, seed=None,
                            repetition_penalty=1.1)
    assert stats.sampling_kwargs(cmd) == {"max_new_tokens": 256, "repetition_penalty": 1.1, "do_sample": True,
                                          "temperature": 0.7, "top_p": 0.9, "top_k": 0, "seed": None}


@pytest.mark.parametrize("decoded_so_far, pieces", [
    (["Hel", "Hello", "Hello!"], ["Hel", "lo", "!"]),
    (["caf", "caf\ufffd", "café", "café!"], ["caf", "", "é", "!"]),  # é split over two tokens: no mark in between
    (["a\ufffd\ufffd", "a\ufffd\ufffd", "a😀"], ["a", "", "😀"]),
    (["\ufffdx", "\ufffdxy"], ["\ufffdx", "y"]),  # a mark followed by text is real (invalid bytes): sent
])
def test_streamed_text_holds_back_incomplete_characters(decoded_so_far, pieces):
    stream = stats.TextStream()
    assert [stream.feed(text) for text in decoded_so_far] == pieces
    assert "".join(pieces) == decoded_so_far[-1].rstrip("\ufffd")
