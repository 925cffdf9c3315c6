from potluck.core.swarm.records import ServerRecord, ServerState, online_per_block
from potluck.core.swarm.status import group_blocks, replica_warnings, status_json, status_text


def rec(peer, start, end, state=ServerState.ONLINE):
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=state, name=peer.upper())


def by_block(records, n):
    return {b: [r for r in records if r.hosts(b)] for b in range(n)}


def test_groups_and_warnings():
    records = [rec("a", 0, 4), rec("b", 2, 6), rec("c", 4, 6, ServerState.DRAINING)]
    table = by_block(records, 8)
    groups = group_blocks(8, table)
    assert [(g.start_block, g.end_block, g.online) for g in groups] == [(0, 2, 1), (2, 4, 2), (4, 6, 1), (6, 8, 0)]
    assert online_per_block(8, table) == (1, 1, 2, 2, 1, 1, 0, 0)
    warnings = replica_warnings(groups)
    assert warnings == [
        "blocks 0-1: only one server — if it leaves, generation stops until another joins",
        "blocks 4-5: only one server — if it leaves, generation stops until another joins",
        "blocks 6-7: no server online — the model cannot run",
    ]
    text = status_text("m@1", 8, table)
    assert "(no server)" in text and "draining" in text and text.count("warning:") == 3
    assert status_json("m@1", 8, table)["coverage"] == [1, 1, 2, 2, 1, 1, 0, 0]


def test_single_block_wording():
    groups = group_blocks(1, {0: []})
    assert replica_warnings(groups) == ["block 0: no server online — the model cannot run"]
