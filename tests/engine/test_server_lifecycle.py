"""Cache budget, idle sessions, and a clean shutdown that tells the swarm the server went offline."""

import asyncio

import pytest

from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.client.swarm_view import SwarmError
from potluck.core.server.server import ServerConfig
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.records import ServerState
from potluck.core.swarm.streams import SESSION_PROTOCOL, open_stream
from potluck.core.wire import control, framing
from potluck.core.wire.control import ErrorCode
from potluck.core.wire.tensors import decode_frame

from .swarm_helpers import InProcessSwarm
from .test_rpc_validation import open_frame

pytestmark = pytest.mark.slow


async def open_session(p2p, server, session_id, max_length):
    reader, writer = await open_stream(p2p, server.peer_id, SESSION_PROTOCOL, timeout_seconds=5)
    await framing.send(writer, open_frame(server, session_id=session_id, max_length=max_length))
    return reader, writer, decode_frame(await asyncio.wait_for(framing.receive(reader), 5))


@pytest.fixture
def client_p2p(request):
    def make(swarm):
        dht = swarm_dht.start_dht(swarm_dht.DHTOptions(initial_peers=tuple(swarm.initial_peers), client_mode=True))
        request.addfinalizer(dht.shutdown)
        return dht, swarm.loop.run(dht.replicate_p2p())
    return make


def test_cache_budget_refuses_cleanly(tiny_models, client_p2p):
    config = ServerConfig(cache_tokens=40, max_session_tokens=40, announce_period_seconds=1.0, record_ttl_seconds=5.0)
    with InProcessSwarm(tiny_models["llama"], [(0, 6)], config=config) as swarm:
        server = swarm.servers[0]
        _, p2p = client_p2p(swarm)
        r1, w1, first = swarm.loop.run(open_session(p2p, server, "a", 30))
        assert isinstance(first, control.Opened) and server.budget.left_tokens == 10
        _, w2, second = swarm.loop.run(open_session(p2p, server, "b", 30))
        assert isinstance(second, control.ErrorReply) and "attention cache is full" in second.message
        assert second.code is ErrorCode.CACHE_FULL
        w1.close()  # the first session ends: its reservation is returned
        swarm.loop.run(asyncio.sleep(0.3))
        assert server.budget.left_tokens == 40
        _, w3, third = swarm.loop.run(open_session(p2p, server, "c", 30))
        assert isinstance(third, control.Opened)
        w2.close(), w3.close()

        # a client asking for more than any server can hold gets a clear error, not a hang
        client = DistributedModelForCausalLM.from_pretrained(str(tiny_models["llama"]), initial_peers=swarm.initial_peers, timeout=5)
        try:
            swarm.loop.run(asyncio.sleep(1.5))  # let the server re-announce its free cache
            with pytest.raises(SwarmError, match="cannot run"):
                client.generate([1, 2, 3], max_new_tokens=60)
            assert len(client.generate([1, 2, 3], max_new_tokens=5, eos_token_id=None).token_ids) == 5
        finally:
            client.shutdown()


def test_idle_session_is_closed_and_its_cache_released(tiny_models, client_p2p):
    config = ServerConfig(session_idle_timeout_seconds=0.5)
    with InProcessSwarm(tiny_models["llama"], [(0, 6)], config=config) as swarm:
        server = swarm.servers[0]
        _, p2p = client_p2p(swarm)
        reader, writer, opened = swarm.loop.run(open_session(p2p, server, "idle", 20))
        assert isinstance(opened, control.Opened) and server.active_sessions == 1
        reply = decode_frame(swarm.loop.run(asyncio.wait_for(framing.receive(reader), 5)))
        assert isinstance(reply, control.ErrorReply) and reply.code is ErrorCode.IDLE_TIMEOUT
        swarm.loop.run(asyncio.sleep(0.2))
        assert server.active_sessions == 0 and server.budget.used_tokens == 0
        writer.close()


def test_clean_shutdown_announces_offline(tiny_models, client_p2p):
    with InProcessSwarm(tiny_models["llama"], [(0, 3), (3, 6)]) as swarm:
        dht, _ = client_p2p(swarm)
        leaving = swarm.servers[1]
        leaving_id = leaving.peer_id
        uid = swarm.spec.uid

        def states():
            by_block = swarm.loop.run(swarm_dht.fetch_records(dht, uid, range(6)))
            return {r.peer_id: r.state for rs in by_block.values() for r in rs}

        assert states()[leaving_id] is ServerState.ONLINE
        assert swarm.loop.run(swarm_dht.fetch_models(dht)) == {uid: 6}
        swarm.stop_server(leaving, drain=True)
        assert states()[leaving_id] is ServerState.OFFLINE
