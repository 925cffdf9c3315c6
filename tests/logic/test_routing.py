import itertools
import random

import pytest

from potluck.core.client.routing import (
    UNMEASURED_MS_PER_BLOCK,
    NoRouteError,
    RouteSpan,
    choose_compute,
    choose_route,
    precision_of,
    replacement_route,
)
from potluck.core.swarm.records import ServerRecord, ServerState

ONLINE, JOINING, DRAINING, OFFLINE = ServerState.ONLINE, ServerState.JOINING, ServerState.DRAINING, ServerState.OFFLINE


def rec(peer, start, end, tp=100.0, state=ONLINE, cache=10_000):
    # tp 100 tokens/s = 10 ms per block
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=state, throughput_tokens_per_second=tp,
                        cache_tokens_left=cache)


def route(*spans):
    return [RouteSpan(peer, start, end) for peer, start, end in spans]


ROUTE_CASES = [
    # (id, records, total, kwargs, expected route)
    ("one server", [rec("a", 0, 4)], 4, {}, route(("a", 0, 4))),
    ("lower-latency replica", [rec("a", 0, 4), rec("b", 0, 4)], 4, {"latency_ms": {"a": 30.0, "b": 10.0}},
     route(("b", 0, 4))),
    ("measured beats default latency", [rec("a", 0, 4), rec("b", 0, 4)], 4, {"latency_ms": {"b": 49.0}},
     route(("b", 0, 4))),
    ("default latency beats a slow link", [rec("a", 0, 4), rec("b", 0, 4)], 4, {"latency_ms": {"a": 51.0}},
     route(("b", 0, 4))),
    ("own server has no link latency", [rec("a", 0, 4), rec("me", 0, 4)], 4,
     {"latency_ms": {"a": 1.0}, "self_peer_id": "me"}, route(("me", 0, 4))),
    ("faster compute beats nearer", [rec("a", 0, 4, tp=10), rec("b", 0, 4, tp=1000)], 4,
     {"latency_ms": {"a": 1.0, "b": 100.0}}, route(("b", 0, 4))),  # a: 1 + 400 ms, b: 100 + 4 ms
    ("one hop beats two of equal time", [rec("a", 0, 4), rec("b", 0, 2), rec("c", 2, 4)], 4,
     {"latency_ms": {"a": 0.0, "b": 0.0, "c": 0.0}}, route(("a", 0, 4))),
    ("one hop beats two of equal time, ids first", [rec("z", 0, 4), rec("a", 0, 2), rec("b", 2, 4)], 4,
     {"latency_ms": {"z": 0.0, "a": 0.0, "b": 0.0}}, route(("z", 0, 4))),
    ("extra hop costs its latency", [rec("a", 0, 4), rec("b", 0, 2), rec("c", 2, 4)], 4, {}, route(("a", 0, 4))),
    ("two hops when clearly faster", [rec("a", 0, 4, tp=10), rec("b", 0, 2, tp=1000), rec("c", 2, 4, tp=1000)], 4,
     {}, route(("b", 0, 2), ("c", 2, 4))),  # a: 50 + 400 ms, b+c: 100 + 4 ms
    ("sub-range: overlap goes to the first", [rec("a", 0, 6), rec("b", 4, 8)], 8, {},
     route(("a", 0, 6), ("b", 6, 8))),
    ("sub-range: overlap goes to the faster", [rec("a", 0, 6, tp=10), rec("b", 4, 8, tp=1000)], 8, {},
     route(("a", 0, 4), ("b", 4, 8))),
    ("sub-range of one server", [rec("a", 0, 8)], 8, {"start_block": 2, "end_block": 5}, route(("a", 2, 5))),
    ("single block at the end", [rec("a", 0, 8), rec("b", 6, 8)], 8,
     {"start_block": 7, "latency_ms": {"b": 1.0}}, route(("b", 7, 8))),
    ("single first block", [rec("a", 0, 8)], 8, {"end_block": 1}, route(("a", 0, 1))),
    ("range past the model clipped", [rec("a", 0, 12)], 8, {}, route(("a", 0, 8))),
    ("equal replicas: lowest peer id", [rec("b", 0, 4), rec("a", 0, 4)], 4, {}, route(("a", 0, 4))),
    ("equal 2-hop routes: longest first span", [rec("a", 0, 3), rec("b", 1, 4)], 4, {},
     route(("a", 0, 3), ("b", 3, 4))),
    ("equal 2-hop routes: lowest first peer", [rec("b", 0, 2), rec("a", 0, 2), rec("c", 2, 4)], 4, {},
     route(("a", 0, 2), ("c", 2, 4))),
    ("skips banned", [rec("a", 0, 4), rec("b", 0, 4)], 4, {"latency_ms": {"a": 1.0}, "banned": {"a"}},
     route(("b", 0, 4))),
    ("skips draining", [rec("a", 0, 4, state=DRAINING), rec("b", 0, 4)], 4, {"latency_ms": {"a": 1.0}},
     route(("b", 0, 4))),
    ("skips joining and offline", [rec("a", 0, 4, state=JOINING), rec("c", 0, 4, state=OFFLINE), rec("b", 0, 4)],
     4, {"latency_ms": {"a": 1.0, "c": 1.0}}, route(("b", 0, 4))),
    ("skips full cache", [rec("a", 0, 4, cache=511), rec("b", 0, 4)], 4,
     {"latency_ms": {"a": 1.0}, "min_cache_tokens": 512}, route(("b", 0, 4))),
    ("cache exactly enough", [rec("a", 0, 4, cache=512), rec("b", 0, 4)], 4,
     {"latency_ms": {"a": 1.0}, "min_cache_tokens": 512}, route(("a", 0, 4))),
    ("banned peer used where it does not matter", [rec("a", 0, 4), rec("b", 4, 8)], 8,
     {"banned": {"a"}, "start_block": 4}, route(("b", 4, 8))),
    ("unmeasured server is a last resort", [rec("a", 0, 4, tp=0.0), rec("b", 0, 2, tp=2), rec("c", 2, 4, tp=2)], 4,
     {}, route(("b", 0, 2), ("c", 2, 4))),  # a: 50 + 4 * 1000 ms, b+c: 100 + 4 * 500 ms
    ("unmeasured server when nothing else", [rec("a", 0, 4, tp=0.0)], 4, {}, route(("a", 0, 4))),
    ("stale + fresh record of one peer", [rec("a", 0, 2), rec("a", 0, 4)], 4, {}, route(("a", 0, 4))),
]


@pytest.mark.parametrize("name, records, total, kwargs, expected", ROUTE_CASES, ids=[c[0] for c in ROUTE_CASES])
def test_choose_route(name, records, total, kwargs, expected):
    assert choose_route(records, total, **kwargs) == expected


@pytest.mark.parametrize(
    "records, total, kwargs, message, block",
    [
        ([], 4, {}, "no online server hosts block 0", 0),
        ([rec("a", 0, 12)], 16, {}, "no online server hosts block 12", 12),
        ([rec("a", 0, 3), rec("b", 4, 8)], 8, {}, "no online server hosts block 3", 3),
        ([rec("a", 0, 3), rec("b", 5, 8)], 8, {}, "no online server hosts block 3", 3),  # first of two
        ([rec("a", 0, 3)], 8, {"start_block": 5}, "no online server hosts block 5", 5),
        ([rec("a", 0, 4)], 8, {"start_block": 2}, "no online server hosts block 4", 4),
        ([rec("a", 0, 4, state=DRAINING)], 4, {}, r"no online server hosts block 0 \(skipped 1 draining\)", 0),
        ([rec("a", 0, 4), rec("b", 0, 4, state=JOINING)], 4, {"banned": ["a"]},
         r"no online server hosts block 0 \(skipped 1 banned, 1 joining\)", 0),
        ([rec("a", 0, 4, cache=10)], 4, {"min_cache_tokens": 11},
         r"no online server hosts block 0 \(skipped 1 without room for 11 cache tokens\)", 0),
    ],
)
def test_no_route(records, total, kwargs, message, block):
    with pytest.raises(NoRouteError, match=f"^{message}$") as info:
        choose_route(records, total, **kwargs)
    assert info.value.block == block


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"total_blocks": 0}, "total_blocks must be >= 1"),
        ({"start_block": 4}, r"range 4:4 must satisfy"),
        ({"start_block": 3, "end_block": 2}, r"range 3:2 must satisfy"),
        ({"end_block": 5}, r"range 0:5 must satisfy .* total_blocks \(4\)"),
        ({"start_block": -1}, "start_block must be >= 0"),
        ({"end_block": 2.0}, "end_block must be an integer"),
        ({"latency_ms": {"a": -1.0}}, r"latency_ms\['a'\] must be a finite number >= 0 ms"),
        ({"latency_ms": {"a": float("inf")}}, r"latency_ms\['a'\] must be a finite number"),
        ({"default_latency_ms": float("nan")}, "default_latency_ms must be a finite number"),
        ({"min_cache_tokens": -1}, "min_cache_tokens must be >= 0"),
        ({"banned": "a"}, "banned must be a collection of peer ids"),
        ({"records": [("a", 0, 4)]}, "records must be ServerRecord"),
    ],
)
def test_choose_route_bad_input(kwargs, message):
    args = {"records": [rec("a", 0, 4)], "total_blocks": 4}
    args.update(kwargs)
    records, total = args.pop("records"), args.pop("total_blocks")
    with pytest.raises(ValueError, match=message):
        choose_route(records, total, **args)


@pytest.mark.parametrize(
    "spec, message",
    [
        (("", 0, 1), "peer_id must be a non-empty string"),
        (("a", 2, 2), "span 2:2 is empty or reversed"),
        (("a", 3, 1), "span 3:1 is empty or reversed"),
        (("a", -1, 1), "start_block must be >= 0"),
        (("a", 0, 1.5), "end_block must be an integer"),
    ],
)
def test_bad_route_span(spec, message):
    with pytest.raises(ValueError, match=message):
        RouteSpan(*spec)


REPLACEMENT_CASES = [
    # (id, records, failed span, banned, expected)
    ("other replicas split the span", [rec("x", 0, 8), rec("b", 0, 4), rec("c", 4, 8)], ("x", 2, 5), (),
     route(("b", 2, 4), ("c", 4, 5))),
    ("failed peer never reused", [rec("x", 0, 8), rec("b", 0, 8, tp=1)], ("x", 2, 5), (), route(("b", 2, 5))),
    ("banned peers respected", [rec("x", 0, 8), rec("b", 0, 8), rec("c", 0, 8, tp=1)], ("x", 0, 8), {"b"},
     route(("c", 0, 8))),
    ("exactly the failed blocks", [rec("x", 0, 8), rec("b", 0, 8)], ("x", 7, 8), (), route(("b", 7, 8))),
]


@pytest.mark.parametrize("name, records, failed, banned, expected", REPLACEMENT_CASES,
                         ids=[c[0] for c in REPLACEMENT_CASES])
def test_replacement_route(name, records, failed, banned, expected):
    assert replacement_route(records, 8, RouteSpan(*failed), banned) == expected


def test_replacement_route_may_keep_a_server_that_shrank():
    records = [rec("x", 0, 4), rec("b", 4, 8)]  # x hosted 0:8 and shrank to 0:4
    assert replacement_route(records, 8, RouteSpan("x", 0, 8), failed_peer_may_stay=True) == route(("x", 0, 4), ("b", 4, 8))
    with pytest.raises(NoRouteError, match="block 0"):
        replacement_route(records, 8, RouteSpan("x", 0, 8))


def test_replacement_route_impossible_names_the_block():
    with pytest.raises(NoRouteError, match=r"^no online server hosts block 4 \(skipped 1 banned\)$"):
        replacement_route([rec("x", 0, 8), rec("b", 0, 4)], 8, RouteSpan("x", 2, 6))


@pytest.mark.parametrize("failed, banned, message", [
    (("x", 0, 9), (), r"range 0:9 must satisfy"),
    (("x", 0, 2), "b", "banned must be a collection"),
])
def test_replacement_route_bad_input(failed, banned, message):
    with pytest.raises(ValueError, match=message):
        replacement_route([rec("x", 0, 8)], 8, RouteSpan(*failed), banned)


def test_replacement_route_rejects_non_span():
    with pytest.raises(ValueError, match="failed_span must be a RouteSpan"):
        replacement_route([rec("x", 0, 8)], 8, ("x", 0, 2))


def route_time_ms(route, records, *, latency_ms, default_latency_ms=50.0):
    """The oracle: expected time per token of a route, as choose_route's docstring defines it (each span at the
    fastest record of its peer that hosts the whole span)."""
    total_ms = 0.0
    for span in route:
        hosting = [r for r in records if r.peer_id == span.peer_id
                   and r.start_block <= span.start_block and span.end_block <= r.end_block]
        per_block_ms = min(1000.0 / r.throughput_tokens_per_second if r.throughput_tokens_per_second > 0
                           else UNMEASURED_MS_PER_BLOCK for r in hosting)
        total_ms += latency_ms.get(span.peer_id, default_latency_ms) + span.num_blocks * per_block_ms
    return total_ms


def _all_routes(records, start, end):
    """Every chain of (peer, start, stop) spans covering [start, end), by brute force."""
    if start == end:
        yield []
        return
    for r in records:
        if r.start_block <= start < r.end_block:
            for stop in range(start + 1, min(r.end_block, end) + 1):
                for rest in _all_routes(records, stop, end):
                    yield [RouteSpan(r.peer_id, start, stop), *rest]


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force(seed):
    rng = random.Random(seed)
    total = rng.randint(1, 6)
    records = []
    for i in range(rng.randint(1, 5)):
        start = rng.randrange(total)
        records.append(rec(f"p{i}", start, rng.randint(start + 1, total), tp=rng.choice([10.0, 50.0, 100.0, 1000.0])))
    records.append(rec("base", 0, total, tp=rng.choice([1.0, 10.0])))  # so a route always exists
    latency = {r.peer_id: rng.choice([0.0, 1.0, 5.0, 20.0]) for r in records if rng.random() < 0.7}
    got = choose_route(records, total, latency_ms=latency)
    got_ms = route_time_ms(got, records, latency_ms=latency)
    best_ms = min(route_time_ms(r, records, latency_ms=latency) for r in _all_routes(records, 0, total))
    assert got_ms == pytest.approx(best_ms, rel=1e-9)
    fewest_hops = min(len(r) for r in _all_routes(records, 0, total)
                      if route_time_ms(r, records, latency_ms=latency) == pytest.approx(best_ms, rel=1e-9))
    assert len(got) == fewest_hops
    assert [(s.start_block, s.end_block) for s in got] == [(a, b) for a, b in itertools.pairwise(
        [0] + [s.end_block for s in got])]  # contiguous, in order, from 0
    assert got[-1].end_block == total


def test_large_swarm_is_fast():
    records = [rec(f"p{i:02d}", (i * 7) % 70, min(80, (i * 7) % 70 + 10 + i % 5), tp=50.0 + i) for i in range(40)]
    records.append(rec("base", 0, 80, tp=5.0))
    spans = choose_route(records, 80, latency_ms={r.peer_id: float(i % 13) for i, r in enumerate(records)})
    assert spans[0].start_block == 0 and spans[-1].end_block == 80


def crec(peer, start, end, compute, state=ONLINE):
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=state, throughput_tokens_per_second=100.0,
                        cache_tokens_left=10_000, compute=compute)


@pytest.mark.parametrize("name, records, precision, expected", [
    ("one precision", [crec("a", 0, 4, "bfloat16")], None, "bfloat16"),
    ("the one covering every block wins", [crec("a", 0, 4, "float32+int8"), crec("b", 0, 2, "bfloat16"),
                                          crec("c", 2, 3, "bfloat16")], None, "float32+int8"),
    ("then the one with more servers", [crec("a", 0, 4, "float32+int8"), crec("b", 0, 2, "float32+int4"),
                                        crec("c", 2, 4, "float32+int4")], None, "float32+int4"),
    ("then the name", [crec("a", 0, 4, "float32+int8"), crec("b", 0, 4, "bfloat16")], None, "bfloat16"),
    ("asked precision only", [crec("a", 0, 4, "float32+int8"), crec("b", 0, 2, "float32+int4")], "int4", "float32+int4"),
    ("none means unquantized", [crec("a", 0, 4, "float32+int8"), crec("b", 0, 4, "bfloat16")], "none", "bfloat16"),
    ("offline servers do not count", [crec("a", 0, 4, "bfloat16", OFFLINE), crec("b", 0, 1, "float32")], None, "float32"),
    ("old servers announce nothing", [crec("a", 0, 4, "")], None, ""),
])
def test_choose_compute(name, records, precision, expected):
    assert choose_compute(records, 4, precision) == expected


def test_choose_compute_without_servers_of_that_precision():
    with pytest.raises(NoRouteError, match="at precision int4"):
        choose_compute([crec("a", 0, 4, "bfloat16")], 4, "int4")


@pytest.mark.parametrize("compute, precision", [("bfloat16", "none"), ("float32+int8", "int8"), ("", "none")])
def test_precision_of(compute, precision):
    assert precision_of(compute) == precision
