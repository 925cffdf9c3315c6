"""Servers choose and change their ranges to cover the swarm's gaps; overlapping ranges still compute exactly."""

import time

import pytest

from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.model.loading import load_blocks
from potluck.core.server.rebalance import Rebalancer
from potluck.core.server.runner import ServeOptions, choose_range
from potluck.core.server.server import BlockServer
from potluck.core.swarm.dht import DHTOptions, start_dht
from tests.engine.swarm_helpers import InProcessSwarm
from tests.engine.test_exactness import reference

pytestmark = pytest.mark.slow
PROMPT = [4, 8, 15, 16, 23, 42]


def test_a_new_joiner_fills_the_gap(resilience_model):
    with InProcessSwarm(resilience_model, [(0, 3)]) as swarm:
        dht = start_dht(DHTOptions(initial_peers=tuple(swarm.initial_peers)))
        try:
            options = ServeOptions(model=str(resilience_model), num_blocks=3, dht=DHTOptions(initial_peers=tuple(swarm.initial_peers)))
            assert choose_range(swarm.spec, options, dht) == (3, 6)
            swarm.add(3, 6)
            options = ServeOptions(model=str(resilience_model), num_blocks=2, dht=DHTOptions(initial_peers=tuple(swarm.initial_peers)))
            start, end = choose_range(swarm.spec, options, dht)
            # no gap left: every block has one server, so the thinnest spot is where the slower server is
            slower = min(swarm.servers, key=lambda s: s.throughput_tokens_per_second)
            assert end - start == 2 and slower.stack.start <= start and end <= slower.stack.end
        finally:
            dht.shutdown()


def test_a_server_moves_when_that_fills_a_gap_and_keeps_shared_blocks(resilience_model):
    ref_tokens, _ = reference(resilience_model, PROMPT, 10)
    with InProcessSwarm(resilience_model, []) as swarm:
        swarm.add(4, 6)

        async def create_mover():
            dht = start_dht(DHTOptions(initial_peers=tuple(swarm.initial_peers)))
            swarm.dhts.append(dht)
            server = await BlockServer.create(swarm.spec, load_blocks(swarm.spec, 0, 3), dht, swarm.config)
            server.run_in_background(Rebalancer(server, lambda s, e: load_blocks(swarm.spec, s, e), 0.3).run())
            swarm.servers.append(server)
            return server

        mover = swarm.loop.run(create_mover(), timeout=60)
        kept = {id(layer) for layer in mover.stack.layers[1:3]}  # blocks 1 and 2 belong to both ranges
        assert (mover.stack.start, mover.stack.end) == (0, 3)
        swarm.add(0, 1)  # someone else covers block 0 now; block 3 has nobody: moving to 1-3 fills the gap
        deadline = time.monotonic() + 15
        while not mover.range_changes and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [(c.kind, c.new) for c in mover.range_changes] == [("move", (1, 4))], mover.range_changes
        assert {id(layer) for layer in mover.stack.layers[:2]} == kept  # shared blocks were not reloaded
        time.sleep(1.0)
        assert len(mover.range_changes) == 1  # and it does not keep moving
        client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers, timeout=5)
        try:
            assert client.generate(PROMPT, max_new_tokens=10, eos_token_id=None).token_ids == ref_tokens
        finally:
            client.shutdown()


def test_three_overlapping_servers_compute_exactly(resilience_model):
    ref_tokens, _ = reference(resilience_model, PROMPT, 12)
    with InProcessSwarm(resilience_model, [(0, 4), (2, 6), (1, 5)]) as swarm:
        for push in (True, False):
            client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers,
                                                                 push=push, timeout=5)
            try:
                result = client.generate(PROMPT, max_new_tokens=12, eos_token_id=None)
            finally:
                client.shutdown()
            assert result.token_ids == ref_tokens
            spans = [(h.start_block, h.end_block) for h in result.route]
            assert spans[0][0] == 0 and spans[-1][1] == 6 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
