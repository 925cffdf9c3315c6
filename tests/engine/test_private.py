"""Private chats: the first and last blocks run in the client, the swarm only the middle ones; the greedy tokens are
exactly the plain swarm's and the local model's (float32 and int8 servers, with and without speculative guesses)."""

import pytest
import torch

from potluck.core.client.local import LocalModelForCausalLM
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.client.private import LOCAL_PEER, PrivateModeError, check_private_blocks, split_compute

from .conftest import LAYERS
from .swarm_helpers import InProcessSwarm

PROMPT = [5, 17, 33, 2, 40, 99, 5, 17, 33, 2, 40, 99, 120, 7]


@pytest.mark.parametrize("num_blocks, private_blocks, ok", [(6, 1, True), (6, 2, True), (6, 3, False), (3, 1, True),
                                                            (2, 1, False), (6, 0, False), (6, True, False)])
def test_private_blocks_must_leave_a_middle(num_blocks, private_blocks, ok):
    if ok:
        check_private_blocks(num_blocks, private_blocks)
    else:
        with pytest.raises(PrivateModeError):
            check_private_blocks(num_blocks, private_blocks)


@pytest.mark.parametrize("compute, expected", [("float32", (torch.float32, "none")), ("bfloat16", (torch.bfloat16, "none")),
                                               ("float32+int8", (torch.float32, "int8")),
                                               ("float32+int4", (torch.float32, "int4"))])
def test_split_compute(compute, expected):
    assert split_compute(compute) == expected


def record_blocks(server, seen: list) -> None:
    """Observe (test process only) which blocks each step of `server` runs, and the tokens of each step."""
    real = server.compute

    async def compute(session, position, hidden):
        seen.append((session.stack.start, session.stack.end, hidden.shape[1]))
        return await real(session, position, hidden)

    server.compute = compute


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["none", "int8"])
def test_private_tokens_equal_the_plain_swarm_and_the_local_model(tiny_models, quant):
    model_dir = str(tiny_models["llama"])
    local = LocalModelForCausalLM.from_pretrained(model_dir, quant=quant)
    expected = local.generate(PROMPT, max_new_tokens=12, eos_token_id=None).token_ids
    assert local.generate(PROMPT, max_new_tokens=12, eos_token_id=None, private=True).token_ids == expected
    with InProcessSwarm(model_dir, [(0, 3), (3, LAYERS)], quant=quant) as swarm:
        seen: list = []
        for server in swarm.servers:
            record_blocks(server, seen)
        client = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers, timeout=10,
                                                             spot_check_rate=0.0)
        try:
            plain = client.generate(PROMPT, max_new_tokens=12, eos_token_id=None)
            assert {(start, end) for start, end, _ in seen} == {(0, 3), (3, LAYERS)}
            seen.clear()
            private = client.generate(PROMPT, max_new_tokens=12, eos_token_id=None, private=True)
            private_lookup = client.generate(PROMPT, max_new_tokens=12, eos_token_id=None, private=True,
                                             speculative="lookup")
            client.private_blocks = 2
            wider = client.generate(PROMPT, max_new_tokens=12, eos_token_id=None, private=True)
            client.private_blocks = 3
            with pytest.raises(PrivateModeError, match="has only 6"):
                client.generate(PROMPT, max_new_tokens=1, private=True)
        finally:
            client.shutdown()
    assert plain.token_ids == private.token_ids == private_lookup.token_ids == wider.token_ids == expected
    assert private_lookup.draft_proposed > 0  # guesses rode along (checked by the middle blocks, then the last)
    hops = [(h.peer_id, h.start_block, h.end_block) for h in private.route]
    assert hops[0] == (LOCAL_PEER, 0, 1) and hops[-1] == (LOCAL_PEER, LAYERS - 1, LAYERS)
    assert [h[1:] for h in hops[1:-1]] == [(1, 3), (3, LAYERS - 1)]
    assert [(h.start_block, h.end_block) for h in wider.route] == [(0, 2), (2, 3), (3, 4), (4, 6)]
    # the friends' servers ran only middle blocks: never the embeddings' first block nor the one before the head
    assert seen and all(start >= 1 and end <= LAYERS - 1 for start, end, _ in seen)
    assert sum(n for start, _, n in seen if start == 1) >= len(PROMPT) + 11


def test_private_must_be_a_flag(tiny_models):
    model = LocalModelForCausalLM.from_pretrained(str(tiny_models["llama"]))
    with pytest.raises(ValueError, match="private must be True or False"):
        model.generate(PROMPT, max_new_tokens=1, private="yes")
