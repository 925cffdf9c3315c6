"""The client measures round trips, routes through the nearer of two replicas, and times out a silent one."""

import socket
import sys
import time
from pathlib import Path

import pytest

from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.localswarm import LocalSwarm
from tests.engine.test_exactness import reference

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.linkdelay import LinkDelay  # noqa: E402  (the project's user-space link-delay relay)

pytestmark = pytest.mark.slow
PROMPT = [4, 8, 15, 16, 23, 42]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_routing_prefers_the_lower_latency_replica(resilience_model):
    ref_tokens, _ = reference(resilience_model, PROMPT, 8)
    far_port = free_port()
    with LinkDelay(("127.0.0.1", far_port), delay_ms=25) as link:  # 25 ms each way in front of one replica
        with LocalSwarm(str(resilience_model), [(0, 3), (3, 6)]) as swarm:
            near = swarm.servers[1]
            far = swarm.add_server(3, 6, "--port", str(far_port), "--announce-port", str(link.port))
            assert any(f"/tcp/{link.port}/" in a for a in far.maddrs)
            client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers, timeout=5)
            try:
                result = client.generate(PROMPT, max_new_tokens=8, eos_token_id=None)
                latency = dict(client.swarm.latency_ms)
            finally:
                client.shutdown()
        assert result.token_ids == ref_tokens
        assert latency[far.peer_id] > latency[near.peer_id] + 30, latency  # a 50 ms round trip vs loopback
        assert [h.peer_id for h in result.route][-1] == near.peer_id
        assert link.stats()["connections"] >= 1  # the far replica really was measured through the relay


def test_a_server_that_vanishes_without_a_reset_is_detected_by_timeout(resilience_model):
    """The link to the serving replica goes silent mid-generation (no reset, no data): the step times out and the
    session moves to the other replica instead of hanging."""
    ref_tokens, _ = reference(resilience_model, PROMPT, 16)
    far_port = free_port()
    with LinkDelay(("127.0.0.1", far_port), delay_ms=0) as link:
        with LocalSwarm(str(resilience_model), [(0, 3), (3, 6)]) as swarm:
            spare = swarm.servers[1]
            silent = swarm.add_server(3, 6, "--port", str(far_port), "--announce-port", str(link.port))
            client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers,
                                                                 timeout=2.0)
            try:
                client.swarm.pin_latency({silent.peer_id: 1.0, spare.peer_id: 10_000.0})

                def on_token(token_id, text, count=[0]):
                    count[0] += 1
                    if count[0] == 5:
                        link.delay_ms = 600_000  # every byte to and from it is now held for ten minutes

                began = time.monotonic()
                result = client.generate(PROMPT, max_new_tokens=16, eos_token_id=None, on_token=on_token)
                took = time.monotonic() - began
            finally:
                client.shutdown()
                link.delay_ms = 0
        assert result.token_ids == ref_tokens
        assert [f.from_peer for f in result.failovers] == [silent.peer_id] and result.failovers[0].reason == "timed out"
        assert took < 15, f"generation took {took:.1f} s"
