"""A PC that serves blocks routes its own chats through its own server (core/client/routing.py, swarm_view.py).

Before: the node's chat client measured its own server's round trip through two event loops (about as long as a
friend's on a LAN) and compared announced throughputs, one-off startup measurements that varied 3x between runs, so
a PC hosting every block often sent its chats to a friend and served nothing itself."""

from __future__ import annotations

import time

import pytest

from potluck.core.client.routing import RouteSpan, choose_route, replacement_route
from potluck.core.swarm.records import ServerRecord, ServerState


def rec(peer, start, end, tp=100.0, state=ServerState.ONLINE, cache=10_000):
    return ServerRecord(peer_id=peer, start_block=start, end_block=end, state=state, throughput_tokens_per_second=tp,
                        cache_tokens_left=cache)


def route(*spans):
    return [RouteSpan(*s) for s in spans]


CASES = [
    # (id, records, kwargs, expected)
    ("a faster friend hosting everything does not win", [rec("me", 0, 4, tp=10), rec("friend", 0, 4, tp=1000)],
     dict(latency_ms={"friend": 0.2}), route(("me", 0, 4))),
    ("a failed ping of our own server changes nothing", [rec("me", 0, 4), rec("friend", 0, 4)],
     dict(latency_ms={"me": 5000.0, "friend": 0.2}), route(("me", 0, 4))),
    ("our blocks here, the rest from friends", [rec("me", 0, 2), rec("friend", 0, 4, tp=1000)],
     dict(latency_ms={"friend": 1.0}), route(("me", 0, 2), ("friend", 2, 4))),
    ("our middle blocks too", [rec("me", 1, 3), rec("friend", 0, 4, tp=1000)], {},
     route(("friend", 0, 1), ("me", 1, 3), ("friend", 3, 4))),
    ("banned (it failed): friends take over", [rec("me", 0, 4), rec("friend", 0, 4)], dict(banned=["me"]),
     route(("friend", 0, 4))),
    ("draining: friends take over", [rec("me", 0, 4, state=ServerState.DRAINING), rec("friend", 0, 4)], {},
     route(("friend", 0, 4))),
    ("no room in its cache: friends take over", [rec("me", 0, 4, cache=10), rec("friend", 0, 4)],
     dict(min_cache_tokens=100), route(("friend", 0, 4))),
    ("among friends, still the fastest", [rec("me", 0, 2), rec("a", 2, 4, tp=10), rec("b", 2, 4, tp=1000)], {},
     route(("me", 0, 2), ("b", 2, 4))),
]


@pytest.mark.parametrize("records, kwargs, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_our_own_server_first(records, kwargs, expected):
    assert choose_route(records, 4, self_peer_id="me", **kwargs) == expected


def test_a_client_without_a_server_of_its_own_takes_the_fastest():
    records = [rec("me", 0, 4, tp=10), rec("friend", 0, 4, tp=1000)]
    assert choose_route(records, 4, latency_ms={"friend": 0.2}) == route(("friend", 0, 4))


def test_a_failed_span_of_our_own_goes_to_a_friend():
    records = [rec("me", 0, 4), rec("friend", 0, 4)]
    assert replacement_route(records, 4, RouteSpan("me", 0, 4), self_peer_id="me") == route(("friend", 0, 4))


@pytest.mark.slow
def test_the_nodes_chat_client_uses_its_own_server(tiny_model):
    """Two servers host every block; ours announces a tenth of the friend's speed. A client built as the node builds
    its chat client (core/node/chat.py: self_peer_id, streams to our server in-process) routes through ours."""
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.node.loopback import LocalServer, LoopbackP2P
    from tests.engine.swarm_helpers import InProcessSwarm

    with InProcessSwarm(tiny_model, [(0, 4), (0, 4)]) as swarm:
        ours, friends = swarm.servers
        ours.throughput_tokens_per_second = friends.throughput_tokens_per_second / 10
        assert swarm.loop.run(ours.announce(), timeout=30)
        local = LocalServer(peer_id=ours.peer_id, handler_for=ours.stream_handler, loop=swarm.loop.loop)
        node_client = DistributedModelForCausalLM.from_pretrained(tiny_model, dht=swarm.dhts[0],
                                                                  self_peer_id=ours.peer_id)
        node_client.swarm.p2p = LoopbackP2P(node_client.swarm.p2p, lambda: local)
        elsewhere = DistributedModelForCausalLM.from_pretrained(tiny_model, initial_peers=swarm.initial_peers)
        try:
            deadline = time.monotonic() + 20  # until both clients see our slower announcement
            while min(r.throughput_tokens_per_second for r in node_client.loop.run(
                    node_client.swarm.records(), 10).values()) > ours.throughput_tokens_per_second + 1:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            for _ in range(3):
                result = node_client.generate(prompt="Hello", max_new_tokens=4)
                assert [(h.peer_id, h.start_block, h.end_block) for h in result.route] == [(ours.peer_id, 0, 4)]
            assert ours.peer_id not in node_client.swarm.latency_ms  # not pinged: reached in-process
            other = elsewhere.generate(prompt="Hello", max_new_tokens=4)
            assert [h.peer_id for h in other.route] == [friends.peer_id]  # everyone else takes the faster one
            assert other.token_ids == result.token_ids
        finally:
            node_client.loop.stop()  # not shutdown(): the DHT's p2p belongs to the server, as in the node
            elsewhere.shutdown()
