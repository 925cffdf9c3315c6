"""Runtime resize: when another program takes the memory, the server sheds blocks instead of running out."""

import time

import pytest

from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.model.loading import load_blocks
from potluck.core.server.resize import ResizePolicy
from potluck.core.swarm import dht as swarm_dht
from tests.engine.swarm_helpers import InProcessSwarm
from tests.engine.test_exactness import reference

pytestmark = pytest.mark.slow
PROMPT = [4, 8, 15, 16, 23, 42]
RESERVE, PER_BLOCK = 1000, 100  # bytes as the fake probe counts them


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_shed_under_memory_pressure_then_grow_back(resilience_model):
    ref_tokens, _ = reference(resilience_model, PROMPT, 20)
    free = {"bytes": 10_000}
    policy = ResizePolicy(reserve_bytes=RESERVE, per_block_bytes=PER_BLOCK, check_period_seconds=0.1, grow_after_seconds=1.0)
    with InProcessSwarm(resilience_model, []) as swarm:
        swarm.add(3, 6)  # a replica of the back half
        # like real memory, what the server sheds comes back as free memory
        elastic = swarm.loop.run(_create(swarm, 0, 6, lambda: free["bytes"] + (6 - elastic.stack.end) * PER_BLOCK, policy), timeout=60)
        dht = swarm.dhts[0]

        def announced_whole() -> bool:  # every block's record of it says 0:6 (a reader between writes sees a mix)
            records = swarm.loop.run(swarm_dht.fetch_records(dht, swarm.spec.uid, range(6)))
            own = [r for b in range(6) for r in records.get(b, []) if r.peer_id == elastic.peer_id]
            return len(own) == 6 and all((r.start_block, r.end_block) == (0, 6) for r in own)

        wait_for(announced_whole)  # else a quick client may route 0:3 here and 3:6 on the replica, and never fail over
        client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers, timeout=5)
        try:
            client.swarm.pin_latency({elastic.peer_id: 1.0})

            def on_token(token_id, text, count=[0]):
                count[0] += 1
                if count[0] == 5:  # a game starts and takes memory: 250 bytes short of the reserve -> shed 3 blocks
                    free["bytes"] = RESERVE - 250
                    wait_for(lambda: elastic.range_changes)

            result = client.generate(PROMPT, max_new_tokens=20, eos_token_id=None, on_token=on_token)
        finally:
            client.shutdown()
        assert result.token_ids == ref_tokens
        assert [f.reason for f in result.failovers] == ["shrinking"]
        assert (elastic.stack.start, elastic.stack.end) == (0, 3)
        assert [(c.kind, c.old, c.new) for c in elastic.range_changes] == [("shrink", (0, 6), (0, 3))]

        by_block = swarm.loop.run(swarm_dht.fetch_records(dht, swarm.spec.uid, range(6)))
        hosts = {b: {r.peer_id for r in rs} for b, rs in by_block.items()}
        assert all(elastic.peer_id in hosts[b] for b in range(3))
        assert all(elastic.peer_id not in hosts[b] for b in range(3, 6))  # gone from the shed blocks at once

        free["bytes"] = 10_000  # the game ends; after a while of free memory the blocks come back
        wait_for(lambda: elastic.range_changes[-1].kind == "grow")
        assert elastic.range_changes[-1].new == (0, 6) and (elastic.stack.start, elastic.stack.end) == (0, 6)
        wait_for(announced_whole)
        client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers, timeout=5)
        try:
            client.swarm.pin_latency({elastic.peer_id: 1.0})
            again = client.generate(PROMPT, max_new_tokens=20, eos_token_id=None)
            assert again.token_ids == ref_tokens
            assert [(h.peer_id, h.start_block, h.end_block) for h in again.route] == [(elastic.peer_id, 0, 6)]
        finally:
            client.shutdown()


def test_pressure_that_passes_quickly_does_not_flap(resilience_model):
    free = {"bytes": 10_000}
    policy = ResizePolicy(reserve_bytes=RESERVE, per_block_bytes=PER_BLOCK, check_period_seconds=0.05, grow_after_seconds=60)
    with InProcessSwarm(resilience_model, []) as swarm:
        swarm.add(0, 1)
        elastic = swarm.loop.run(_create(swarm, 0, 6, lambda: free["bytes"] + (6 - elastic.stack.end) * PER_BLOCK, policy), timeout=60)
        free["bytes"] = RESERVE - 50
        wait_for(lambda: elastic.range_changes)
        free["bytes"] = 10_000
        time.sleep(0.5)
        assert [(c.kind, c.new) for c in elastic.range_changes] == [("shrink", (0, 5))]  # once, and no quick regrow
        assert (elastic.stack.start, elastic.stack.end) == (0, 5)


async def _create(swarm, start, end, probe, policy):
    from potluck.core.server.resize import MemoryWatcher
    from potluck.core.server.server import BlockServer
    from potluck.core.swarm.dht import DHTOptions, start_dht

    dht = start_dht(DHTOptions(initial_peers=tuple(swarm.initial_peers)))
    swarm.dhts.append(dht)
    stack = load_blocks(swarm.spec, start, end)
    server = await BlockServer.create(swarm.spec, stack, dht, swarm.config)
    server.run_in_background(MemoryWatcher(server, probe, policy, lambda s, e: load_blocks(swarm.spec, s, e)).run())
    swarm.servers.append(server)
    return server
