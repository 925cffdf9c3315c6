"""A server dies (kill -9) or drains mid-generation: the session moves to a replica and the output is unchanged."""

import signal
import time

import pytest

from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.localswarm import LocalSwarm
from tests.engine.test_exactness import reference

pytestmark = pytest.mark.slow
PROMPT = [4, 8, 15, 16, 23, 42]
NEW_TOKENS = 24


def generate_and_disturb(model_dir, swarm, victim, disturb, at_token=6, push=True, prompt=PROMPT, **generate):
    """Generate greedily while pinning the route through `victim`, and `disturb(victim)` after `at_token` tokens."""
    client = DistributedModelForCausalLM.from_pretrained(str(model_dir), initial_peers=swarm.initial_peers, push=push, timeout=5)
    try:
        # make the victim the obvious choice for its blocks, so the session really runs through it
        client.swarm.pin_latency({s.peer_id: (1.0 if s is victim else 10_000.0) for s in swarm.servers})
        stamps = []

        def on_token(token_id, text):
            stamps.append(time.perf_counter())
            if len(stamps) == at_token:
                disturb(victim)

        result = client.generate(prompt, max_new_tokens=NEW_TOKENS, eos_token_id=None, on_token=on_token, **generate)
    finally:
        client.shutdown()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return result, gaps


@pytest.mark.parametrize("push", [True, False])
def test_kill_9_mid_generation_keeps_the_output(resilience_model, push):
    ref_tokens, _ = reference(resilience_model, PROMPT, NEW_TOKENS)
    with LocalSwarm(str(resilience_model), [(0, 3), (3, 6), (3, 6)]) as swarm:
        victim = swarm.servers[1]
        result, gaps = generate_and_disturb(resilience_model, swarm, victim, lambda s: s.process.send_signal(signal.SIGKILL), push=push)
        assert result.token_ids == ref_tokens, result.failovers
        assert [f.from_peer for f in result.failovers] == [victim.peer_id]
        assert result.failovers[0].to_peers == (swarm.servers[2].peer_id,)
        assert result.failovers[0].replayed_tokens >= len(PROMPT) + 5
        assert max(gaps) < 1.0, f"next token took {max(gaps):.2f} s after the kill"  # the target on loopback


@pytest.mark.parametrize("push", [True, False])
def test_kill_9_during_speculative_decoding_keeps_the_output(resilience_model, push):
    """Guesses ride along with each step; a server dies mid-verification; the replacement's cache is rebuilt
    from the client's and the servers' history without the rejected guesses; the tokens are unchanged."""
    from potluck.core.client.local import LocalModelForCausalLM

    prompt = [4, 8, 15, 16, 23, 42, 4, 8, 15, 16, 23, 42, 4, 8]
    plain = LocalModelForCausalLM.from_pretrained(str(resilience_model)).generate(prompt, max_new_tokens=NEW_TOKENS,
                                                                                  eos_token_id=None)
    with LocalSwarm(str(resilience_model), [(0, 3), (3, 6), (3, 6)]) as swarm:
        victim = swarm.servers[1]
        result, _ = generate_and_disturb(resilience_model, swarm, victim, lambda s: s.process.send_signal(signal.SIGKILL),
                                         push=push, prompt=prompt, at_token=4, speculative="lookup")
        assert result.token_ids == plain.token_ids, result.failovers
        assert [f.from_peer for f in result.failovers] == [victim.peer_id]
        assert result.draft_proposed > 0


def test_kill_9_of_the_first_server_replays_from_the_client(resilience_model):
    ref_tokens, _ = reference(resilience_model, PROMPT, NEW_TOKENS)
    with LocalSwarm(str(resilience_model), [(0, 3), (0, 3), (3, 6)]) as swarm:
        victim = swarm.servers[0]
        result, _ = generate_and_disturb(resilience_model, swarm, victim, lambda s: s.process.send_signal(signal.SIGKILL))
        assert result.token_ids == ref_tokens
        assert result.failovers[0].blocks == (0, 3) and result.failovers[0].to_peers == (swarm.servers[1].peer_id,)


def test_replacement_by_two_servers_with_other_boundaries(resilience_model):
    """The dead server's blocks 0-5 are taken over by two servers covering 0-2 and 3-5 (a chain inside the chain)."""
    ref_tokens, _ = reference(resilience_model, PROMPT, NEW_TOKENS)
    with LocalSwarm(str(resilience_model), [(0, 6), (0, 3), (3, 6)]) as swarm:
        victim = swarm.servers[0]
        result, _ = generate_and_disturb(resilience_model, swarm, victim, lambda s: s.process.send_signal(signal.SIGKILL))
        assert result.token_ids == ref_tokens
        assert result.failovers[0].to_peers == (swarm.servers[1].peer_id, swarm.servers[2].peer_id)


def test_drain_moves_live_sessions_without_an_error(resilience_model):
    ref_tokens, _ = reference(resilience_model, PROMPT, NEW_TOKENS)
    with LocalSwarm(str(resilience_model), [(0, 3), (3, 6), (3, 6)]) as swarm:
        victim = swarm.servers[1]
        result, _ = generate_and_disturb(resilience_model, swarm, victim, lambda s: s.process.send_signal(signal.SIGTERM))
        assert result.token_ids == ref_tokens
        assert [f.reason for f in result.failovers] == ["leaving"]
        assert victim.process.wait(30) == 0 and "stopped" in victim.log_tail()


def test_drain_without_a_replica_lets_the_session_finish(resilience_model):
    ref_tokens, _ = reference(resilience_model, PROMPT, NEW_TOKENS)
    with LocalSwarm(str(resilience_model), [(0, 3), (3, 6)]) as swarm:
        victim = swarm.servers[1]
        result, _ = generate_and_disturb(resilience_model, swarm, victim, lambda s: s.process.send_signal(signal.SIGTERM))
        assert result.token_ids == ref_tokens and result.failovers == []
        assert victim.process.wait(30) == 0


def test_failover_skips_a_replacement_that_died_too(resilience_model):
    """The best replacement is dead as well (its record has not expired yet): the session moves on to the next."""
    ref_tokens, _ = reference(resilience_model, PROMPT, NEW_TOKENS)
    with LocalSwarm(str(resilience_model), [(0, 3), (3, 6), (3, 6), (3, 6)]) as swarm:
        victim, dead_spare, last_spare = swarm.servers[1:]
        client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers, timeout=5)
        try:
            client.swarm.pin_latency({victim.peer_id: 1.0, dead_spare.peer_id: 2.0, last_spare.peer_id: 10_000.0})
            dead_spare.process.send_signal(signal.SIGKILL)
            dead_spare.process.wait(5)

            def on_token(token_id, text, count=[0]):
                count[0] += 1
                if count[0] == 6:
                    victim.process.send_signal(signal.SIGKILL)

            result = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None, on_token=on_token)
        finally:
            client.shutdown()
        assert result.token_ids == ref_tokens, result.failovers
        assert result.failovers[-1].to_peers == (last_spare.peer_id,)


def test_kill_9_while_sessions_are_batched_keeps_every_output(resilience_model):
    """Three conversations at once (their decode steps batched on each server); the replica they all use dies."""
    import threading

    from potluck.core.client.local import LocalModelForCausalLM

    prompts = [PROMPT, PROMPT[:3], PROMPT[::-1]]
    local = LocalModelForCausalLM.from_pretrained(str(resilience_model))
    expected = [local.generate(p, max_new_tokens=NEW_TOKENS, eos_token_id=None).token_ids for p in prompts]
    with LocalSwarm(str(resilience_model), [(0, 3), (3, 6), (3, 6)]) as swarm:
        victim = swarm.servers[1]
        client = DistributedModelForCausalLM.from_pretrained(str(resilience_model), initial_peers=swarm.initial_peers,
                                                             timeout=5)
        client.swarm.pin_latency({s.peer_id: (1.0 if s is victim else 10_000.0) for s in swarm.servers})
        results, tokens = [None] * len(prompts), []
        try:
            def one(i: int) -> None:
                def on_token(token_id, text):
                    tokens.append(token_id)
                    if len(tokens) == 12:
                        victim.process.send_signal(signal.SIGKILL)

                results[i] = client.generate(prompts[i], max_new_tokens=NEW_TOKENS, eos_token_id=None,
                                             on_token=on_token)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
        finally:
            client.shutdown()
        assert [r.token_ids for r in results] == expected
        assert any(r.failovers for r in results) and victim.process.poll() is not None
