import pytest

from potluck.core.server.block_selection import choose_blocks, coverage, should_move, throughput_per_block
from potluck.core.swarm.records import ServerRecord, ServerState

ONLINE, JOINING, DRAINING, OFFLINE = ServerState.ONLINE, ServerState.JOINING, ServerState.DRAINING, ServerState.OFFLINE


def rec(peer, start, end, tp=1.0, state=ONLINE):
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=state, throughput_tokens_per_second=tp)


@pytest.mark.parametrize(
    "total, records, expected",
    [
        (4, [], [0, 0, 0, 0]),
        (1, [rec("a", 0, 1)], [1]),
        (4, [rec("a", 1, 3)], [0, 1, 1, 0]),
        (4, [rec("a", 0, 4), rec("b", 0, 2), rec("c", 3, 4)], [2, 2, 1, 2]),
        (4, [rec("a", 0, 4, state=JOINING)], [1, 1, 1, 1]),  # loading servers count
        (4, [rec("a", 0, 4, state=DRAINING), rec("b", 0, 4, state=OFFLINE)], [0, 0, 0, 0]),  # leaving ones do not
        (4, [rec("a", 0, 2), rec("a", 0, 2)], [1, 1, 0, 0]),  # the same announcement seen twice
        (4, [rec("a", 0, 3), rec("a", 1, 4)], [1, 1, 1, 1]),  # stale + fresh record of one peer: once per block
        (4, [rec("a", 2, 10)], [0, 0, 1, 1]),  # range past the model's end is clipped
        (4, [rec("a", 4, 6)], [0, 0, 0, 0]),  # entirely past the end
    ],
)
def test_coverage(total, records, expected):
    assert coverage(total, records) == expected


@pytest.mark.parametrize(
    "total, records, expected",
    [
        (3, [], [0.0, 0.0, 0.0]),
        (3, [rec("a", 0, 3, tp=10), rec("b", 1, 2, tp=5)], [10.0, 15.0, 10.0]),
        (3, [rec("a", 0, 3, tp=10), rec("b", 0, 3, tp=5, state=DRAINING)], [10.0, 10.0, 10.0]),
        (2, [rec("a", 0, 2, tp=10), rec("a", 0, 2, tp=12)], [12.0, 12.0]),  # one peer counts once, its best
        (2, [rec("a", 0, 2, tp=0.0, state=JOINING)], [0.0, 0.0]),
    ],
)
def test_throughput_per_block(total, records, expected):
    assert throughput_per_block(total, records) == expected


@pytest.mark.parametrize(
    "num_blocks, total, records, self_peer, expected",
    [
        (3, 8, [], None, (0, 3)),  # empty swarm: start at the beginning
        (8, 8, [], None, (0, 8)),  # whole model
        (20, 8, [], None, (0, 8)),  # more than the model: clipped
        (2, 8, [rec("a", 0, 6)], None, (6, 8)),  # gap at the end
        (1, 5, [rec("a", 0, 4)], None, (4, 5)),  # gap of exactly the last block
        (1, 5, [rec("a", 1, 5)], None, (0, 1)),  # gap of exactly the first block
        (2, 8, [rec("a", 0, 3), rec("b", 5, 8)], None, (3, 5)),  # gap in the middle, exact fit
        (2, 8, [rec("a", 0, 3), rec("b", 6, 8)], None, (3, 5)),  # gap wider than us: lowest start
        (4, 8, [rec("a", 0, 3), rec("b", 5, 8)], None, (1, 5)),  # gap narrower than us: cover it, lowest start
        (2, 5, [rec("a", 1, 2), rec("b", 4, 5)], None, (2, 4)),  # two gap blocks beat one
        (3, 6, [rec("a", 0, 1), rec("b", 3, 6)], None, (0, 3)),  # [0,3) has 2 gaps, [1,4) too: lowest start
        (2, 6, [rec("a", 0, 6), rec("b", 0, 2), rec("c", 4, 6)], None, (2, 4)),  # thinnest spot
        (2, 6, [rec("a", 0, 6), rec("b", 0, 3), rec("c", 4, 6)], None, (2, 4)),  # [3] thin; [2,4) before [3,5)
        (2, 6, [rec("a", 0, 6, tp=1), rec("b", 0, 6, tp=5), rec("c", 2, 4, tp=1), rec("d", 4, 6, tp=9),
                rec("e", 0, 2, tp=3)], None, (2, 4)),  # equal replicas (3); tokens/s [9,9,7,7,15,15]: the slowest
        (2, 4, [rec("a", 0, 2, tp=100), rec("b", 2, 4, tp=1), rec("c", 2, 4, tp=1)], None,
         (0, 2)),  # fewer replicas beats lower throughput
        (2, 4, [rec("a", 0, 4, tp=5), rec("b", 2, 4, tp=5, state=DRAINING)], None, (0, 2)),  # draining ignored:
        (2, 4, [rec("a", 0, 4, tp=5), rec("b", 0, 2, tp=5, state=DRAINING)], None, (0, 2)),  # equal, lowest start
        (2, 4, [rec("me", 0, 2), rec("a", 0, 4)], "me", (0, 2)),  # own record ignored: its range is thin
        (2, 4, [rec("me", 0, 2), rec("a", 0, 4)], None, (2, 4)),  # counted when not told who we are
        (2, 4, [rec("a", 0, 4, tp=2), rec("b", 0, 4, tp=2)], None, (0, 2)),  # uniform: lowest start
    ],
)
def test_choose_blocks(num_blocks, total, records, self_peer, expected):
    assert choose_blocks(num_blocks, total, records, self_peer_id=self_peer) == expected


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 8, []), "num_blocks must be >= 1"),
        ((-1, 8, []), "num_blocks must be >= 1"),
        ((2.0, 8, []), "num_blocks must be an integer"),
        ((True, 8, []), "num_blocks must be an integer"),
        ((2, 0, []), "total_blocks must be >= 1"),
        ((2, 8, [{"peer_id": "a"}]), "records must be ServerRecord"),
    ],
)
def test_choose_blocks_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        choose_blocks(*args)


# should_move: this server is "me"; others as given.
MOVE_CASES = [
    # (id, current range, total, records, min_improvement, expected)
    ("fills a gap elsewhere", (0, 2), 4, [rec("me", 0, 2), rec("a", 0, 2)], 1.2, (2, 4)),
    ("fills a gap without its own record", (0, 2), 4, [rec("a", 0, 2)], 1.2, (2, 4)),
    ("gap filling beats the threshold", (0, 2), 4, [rec("a", 0, 2)], 1000.0, (2, 4)),
    ("fills a partial gap", (0, 2), 6, [rec("me", 0, 2), rec("a", 0, 5)], 1.2, (4, 6)),
    ("sole host: never leave a gap", (0, 2), 4, [rec("me", 0, 2)], 1.2, None),
    ("keeps the block it alone hosts, fills the gap", (0, 3), 6, [rec("me", 0, 3), rec("a", 0, 2)], 1.2, (2, 5)),
    ("sole host of a block it would give up", (0, 3), 6, [rec("me", 0, 3), rec("a", 1, 3)], 1.2, None),
    ("other host still loading", (0, 2), 4, [rec("me", 0, 2), rec("a", 0, 2, state=JOINING)], 1.2, None),
    ("other host draining", (0, 2), 4, [rec("me", 0, 2), rec("a", 0, 2, state=DRAINING)], 1.2, None),
    ("gap being filled by a joiner", (0, 2), 4, [rec("me", 0, 2), rec("a", 0, 2), rec("j", 2, 4, state=JOINING)],
     1.2, None),
    ("already at the best place", (2, 4), 4, [rec("me", 2, 4), rec("a", 0, 4), rec("b", 0, 2)], 1.2, None),
    ("raises min replicas 1 -> 2", (2, 4), 4, [rec("me", 2, 4), rec("a", 0, 4), rec("b", 2, 4)], 1.2, (0, 2)),
    ("uniform swarm: no pointless move", (2, 4), 4, [rec("me", 2, 4), rec("a", 0, 4), rec("b", 0, 4)], 1.2, None),
    # throughput: others a[0,4) 5 + b[0,2) 5 + c[2,4) 8 -> per block [10,10,13,13]; me (tp 2) at [2,4):
    # stay min 10, move to [0,2): min 12 -> exactly 1.2x
    ("throughput x1.2 at 1.2", (2, 4), 4,
     [rec("me", 2, 4, tp=2), rec("a", 0, 4, tp=5), rec("b", 0, 2, tp=5), rec("c", 2, 4, tp=8)], 1.2, (0, 2)),
    ("throughput x1.2 at 1.0", (2, 4), 4,
     [rec("me", 2, 4, tp=2), rec("a", 0, 4, tp=5), rec("b", 0, 2, tp=5), rec("c", 2, 4, tp=8)], 1.0, (0, 2)),
    ("throughput x1.2 below 1.21", (2, 4), 4,
     [rec("me", 2, 4, tp=2), rec("a", 0, 4, tp=5), rec("b", 0, 2, tp=5), rec("c", 2, 4, tp=8)], 1.21, None),
    ("throughput x1.9", (2, 4), 4,
     [rec("me", 2, 4, tp=10), rec("a", 0, 4, tp=10), rec("b", 0, 2, tp=1), rec("c", 2, 4, tp=20)], 1.2, (0, 2)),
    ("throughput x1.09 is not clear", (2, 4), 4,
     [rec("me", 2, 4, tp=1), rec("a", 0, 4, tp=10), rec("b", 0, 2, tp=1), rec("c", 2, 4, tp=20)], 1.2, None),
    ("unmeasured servers: no throughput move", (2, 4), 4,
     [rec("me", 2, 4, tp=5), rec("a", 0, 4, tp=0), rec("b", 0, 2, tp=0), rec("c", 2, 4, tp=0)], 1.2, None),
    ("own stale record elsewhere ignored", (0, 2), 4, [rec("me", 2, 4), rec("me", 0, 2), rec("a", 0, 2)], 1.2,
     (2, 4)),
]


@pytest.mark.parametrize("name, current, total, records, min_improvement, expected", MOVE_CASES,
                         ids=[case[0] for case in MOVE_CASES])
def test_should_move(name, current, total, records, min_improvement, expected):
    assert should_move("me", current, total, records, min_improvement=min_improvement) == expected


@pytest.mark.parametrize("name, current, total, records, min_improvement, expected",
                         [c for c in MOVE_CASES if c[-1] is not None], ids=[c[0] for c in MOVE_CASES if c[-1]])
def test_no_move_back_after_moving(name, current, total, records, min_improvement, expected):
    moved = [r for r in records if r.peer_id != "me"]
    own_tp = max((r.throughput_tokens_per_second for r in records if r.peer_id == "me"), default=0.0)
    moved.append(rec("me", *expected, tp=own_tp))
    assert should_move("me", expected, total, moved, min_improvement=min_improvement) is None


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("me", (2, 2), 4, []), {}, r"range 2:2 must satisfy"),
        (("me", (3, 1), 4, []), {}, r"range 3:1 must satisfy"),
        (("me", (2, 5), 4, []), {}, r"range 2:5 must satisfy"),
        (("me", (-1, 2), 4, []), {}, "range start must be >= 0"),
        (("me", (0,), 4, []), {}, "must be a \\(start, end\\) pair"),
        (("me", (0, 2.0), 4, []), {}, "range end must be an integer"),
        (("me", (0, 2), 0, []), {}, "total_blocks must be >= 1"),
        (("", (0, 2), 4, []), {}, "self_peer_id must be a non-empty string"),
        ((None, (0, 2), 4, []), {}, "self_peer_id must be a non-empty string"),
        (("me", (0, 2), 4, []), {"min_improvement": 0.9}, "min_improvement must be a number >= 1.0"),
        (("me", (0, 2), 4, []), {"min_improvement": float("nan")}, "min_improvement must be a number >= 1.0"),
        (("me", (0, 2), 4, []), {"min_improvement": True}, "min_improvement must be a number >= 1.0"),
    ],
)
def test_should_move_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        should_move(*args, **kwargs)
