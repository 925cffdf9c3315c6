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


# ---- presence: two PCs agree on who is online (issue 14, item 4) --------------------------------------------------

ANA, BEN = "12D3KooWana", "12D3KooWben"


def _friends_online(members, own):
    return sorted(m.peer_id for m in members if m.online and m.peer_id != own)


def test_two_pcs_agree_when_one_is_paused():
    """Ana serves every block, Ben paused. Both read the same DHT: Ana's server record and both presences.
    Server records alone made Ana see nobody while Ben counted Ana ("1 friend online" against "no friends
    online yet"); with presence both count one friend online."""
    dht_records = [record(ANA, 0, 4, name="Ana")]
    presence = [stats.Presence(ANA, "Ana", "serving"), stats.Presence(BEN, "Ben", "paused")]
    on_ana = stats.members(dht_records, Me(ANA, "Ana", NodeState.SERVING, 0, 4), presence, now=100.0)
    on_ben = stats.members(dht_records, Me(BEN, "Ben", NodeState.PAUSED), presence, now=100.0)
    assert _friends_online(on_ana, ANA) == [BEN] and _friends_online(on_ben, BEN) == [ANA]
    ben_on_ana = next(m for m in on_ana if m.peer_id == BEN)
    assert (ben_on_ana.name, ben_on_ana.state, ben_on_ana.online, ben_on_ana.last_seen) == ("Ben", "paused", True, 100.0)
    # what the old rule (server records only) said: they disagreed
    assert _friends_online(stats.members(dht_records, Me(ANA, "Ana", NodeState.SERVING, 0, 4)), ANA) == []
    assert _friends_online(stats.members(dht_records, Me(BEN, "Ben", NodeState.PAUSED)), BEN) == [ANA]


def test_a_friend_who_quit_stays_listed_with_when_last_seen():
    remembered = {BEN: ("Ben", 40.0), "12D3KooWcho": ("Cho", 0.0)}  # Cho: a member never seen online
    got = stats.members([], Me(ANA, "Ana", NodeState.SERVING, 0, 4), (), remembered, now=1000.0)
    assert [(m.peer_id, m.online, m.state, m.last_seen) for m in got] == [
        (ANA, True, "online", 1000.0), (BEN, False, "offline", 40.0), ("12D3KooWcho", False, "offline", 0.0)]


def test_presence_and_records_merge_one_entry_per_peer():
    records = [record(BEN, 2, 4, ServerState.OFFLINE, name="Ben"), record(ANA, 0, 2, name="Ana")]
    presence = [stats.Presence(BEN, "Ben's laptop", "paused"), stats.Presence(ANA, "Ana", "serving"),
                stats.Presence("12D3KooWdan", "Dan", "stopping")]  # leaving: not online
    got = {m.peer_id: m for m in stats.members(records, None, presence, {BEN: ("Ben", 5.0)}, now=9.0)}
    assert set(got) == {ANA, BEN}
    assert (got[ANA].state, got[ANA].start_block, got[ANA].end_block) == ("online", 0, 2)  # the server record wins
    assert (got[BEN].state, got[BEN].online, got[BEN].name) == ("paused", True, "Ben's laptop")


@pytest.mark.parametrize("samples, rate", [
    ([(0, 0)], 0.0),
    ([(0, 0), (2, 10)], 5.0),
    # bursts and silences in 2-s periods read as the minute's average, not 4.5 then 26
    ([(t, c) for t, c in zip(range(0, 62, 2), [0, 9, 9, 61, 61, 70, 70, 122, 122, 131, 131, 183, 183, 192, 192,
                                                 244, 244, 253, 253, 305, 305, 314, 314, 366, 366, 375, 375, 427, 427,
                                                 436, 436])], 436 / 60),
    ([(0, 0), (30, 300), (90, 600)], 300 / 60),  # from the sample at the window's start
    ([(0, 0), (30, 300), (61, 610), (100, 700)], (700 - 300) / 70),
    ([(0, 500), (2, 10)], 0.0),  # a new serving period: the counter went down
])
def test_rate_window(samples, rate):
    window = stats.RateWindow(60.0)
    got = [window.add(t, c) for t, c in samples][-1]
    assert got == pytest.approx(rate)


def test_gave_counts_only_work_for_others():
    done = Contribution(tokens_served=100, tokens_for_others=30)
    now = Contribution(start_block=0, end_block=2, tokens_served=10, tokens_for_others=0)
    got = stats.build_stats(done.plus(now), total_blocks=2, memory_used_bytes=0, memory_free_bytes=0, tokens_used=80,
                            by_block=None, me=None, served_tokens_per_second=1.234, memory_blocks_bytes=7,
                            month_bytes_up=9)
    assert (got.tokens_served, got.tokens_for_others, got.tokens_used) == (110, 30, 80)
    assert (got.served_tokens_per_second, got.memory_blocks_bytes, got.month_bytes_up) == (1.23, 7, 9)
