"""The client measures round trips and routes through the nearer of two replicas."""

import socket
import sys
from pathlib import Path

import pytest

from core.client.model import DistributedModelForCausalLM
from core.localswarm import LocalSwarm

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
        assert [h["peer_id"] for h in result.route][-1] == near.peer_id
        assert link.stats()["connections"] >= 1  # the far replica really was measured through the relay
