"""Routing around suspects (`avoid`): a suspect is used only for blocks no one else serves, before any speed or
this-PC preference; unlike a ban it never makes a block unreachable."""

import pytest

from potluck.core.client.routing import NoRouteError, RouteSpan, choose_route, replacement_route
from potluck.core.swarm.records import ServerRecord, ServerState


def rec(peer, start, end, tp=100.0, state=ServerState.ONLINE):
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=state, throughput_tokens_per_second=tp,
                        cache_tokens_left=10_000)


def route(*spans):
    return [RouteSpan(peer, start, end) for peer, start, end in spans]


AVOID_CASES = [
    # (id, records, total, kwargs, expected route)
    ("replica instead of the suspect", [rec("a", 0, 4), rec("b", 0, 4)], 4, {"avoid": {"a"}}, route(("b", 0, 4))),
    ("a much slower replica still wins", [rec("a", 0, 4, tp=1000), rec("b", 0, 4, tp=1)], 4,
     {"avoid": {"a"}, "latency_ms": {"a": 0.0, "b": 500.0}}, route(("b", 0, 4))),
    ("the suspect keeps a block no one else serves", [rec("a", 0, 4), rec("b", 0, 2)], 4, {"avoid": {"a"}},
     route(("b", 0, 2), ("a", 2, 4))),
    ("only suspects: the route still exists", [rec("a", 0, 4)], 4, {"avoid": {"a"}}, route(("a", 0, 4))),
    ("fewest blocks on suspects, even with more hops", [rec("a", 0, 4), rec("b", 0, 1), rec("c", 1, 3)], 4,
     {"avoid": {"a"}}, route(("b", 0, 1), ("c", 1, 3), ("a", 3, 4))),
    ("two suspects: the one covering fewer blocks alone", [rec("a", 0, 4), rec("b", 0, 4), rec("c", 0, 2)], 4,
     {"avoid": {"a", "b"}}, route(("c", 0, 2), ("a", 2, 4))),
    ("avoid outranks this PC's own server", [rec("me", 0, 4), rec("b", 0, 4)], 4,
     {"avoid": {"me"}, "self_peer_id": "me"}, route(("b", 0, 4))),
    ("this PC still first among the rest", [rec("me", 0, 4), rec("b", 0, 4), rec("c", 0, 4)], 4,
     {"avoid": {"c"}, "self_peer_id": "me", "latency_ms": {"b": 0.0}}, route(("me", 0, 4))),
    ("a sub-range avoids too", [rec("a", 0, 8), rec("b", 2, 6)], 8,
     {"avoid": {"a"}, "start_block": 2, "end_block": 5}, route(("b", 2, 5))),
    ("nothing to avoid: unchanged", [rec("a", 0, 4), rec("b", 0, 4)], 4, {"avoid": set()}, route(("a", 0, 4))),
]


@pytest.mark.parametrize("records, total, kwargs, expected", [c[1:] for c in AVOID_CASES],
                         ids=[c[0] for c in AVOID_CASES])
def test_choose_route_avoids_suspects(records, total, kwargs, expected):
    assert choose_route(records, total, **kwargs) == expected


def test_a_banned_suspect_is_not_used_even_as_a_last_resort():
    with pytest.raises(NoRouteError) as caught:
        choose_route([rec("a", 0, 4), rec("b", 0, 2)], 4, avoid={"a"}, banned={"a"})
    assert caught.value.block == 2


def test_replacement_route_avoids_suspects_too():
    records = [rec("a", 0, 4), rec("b", 0, 4), rec("c", 0, 4, tp=1)]
    assert replacement_route(records, 4, RouteSpan("a", 0, 4), avoid={"b"}) == route(("c", 0, 4))
    assert replacement_route(records, 4, RouteSpan("a", 0, 4), avoid={"b", "c"}) == route(("b", 0, 4))


def test_one_string_is_refused():
    with pytest.raises(ValueError, match="avoid must be a collection of peer ids"):
        choose_route([rec("a", 0, 4)], 4, avoid="a")
