"""Kill -9 mid-generation for the families with sliding windows, attention sinks and experts (gpt-oss, Gemma 3).

The kill comes after the sequence has passed the sliding window (8 tokens in the tiny configs), so the surviving
server must roll its sliding-window caches back to retry the lost step, and the replacement rebuilds them by
replay. Needs the session change that makes `ServerSession` use `BlockStack.new_cache()` / `rollback()`.
"""

import signal

import pytest

from potluck.core.localswarm import LocalSwarm
from potluck.core.model.tiny import TINY_SLIDING_WINDOW, make_tiny_model
from tests.engine.test_exactness import reference
from tests.resilience.test_failover import NEW_TOKENS, PROMPT, generate_and_disturb

pytestmark = pytest.mark.slow
KILL_AFTER_TOKENS = 10  # the sequence is then len(PROMPT) + 10 = 16 tokens long, twice the window


@pytest.fixture(scope="module", params=["gpt_oss", "gemma3"])
def family_model(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    return make_tiny_model(request.param, root / request.param, layers=6, hidden=64, seed=11, shard_size="40KB")


def test_kill_9_past_the_sliding_window_keeps_the_output(family_model):
    """With push, the first server has already run the lost step: the client's retry makes it roll back."""
    ref_tokens, _ = reference(family_model, PROMPT, NEW_TOKENS)
    with LocalSwarm(str(family_model), [(0, 3), (3, 6), (3, 6)]) as swarm:
        victim = swarm.servers[1]
        result, _ = generate_and_disturb(family_model, swarm, victim, lambda s: s.process.send_signal(signal.SIGKILL),
                                         at_token=KILL_AFTER_TOKENS, push=True)
        assert result.token_ids == ref_tokens, result.failovers
        assert [f.from_peer for f in result.failovers] == [victim.peer_id]
        assert result.failovers[0].to_peers == (swarm.servers[2].peer_id,)
        assert result.failovers[0].replayed_tokens >= len(PROMPT) + KILL_AFTER_TOKENS - 1 > TINY_SLIDING_WINDOW
