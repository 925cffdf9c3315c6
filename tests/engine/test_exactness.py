"""The swarm computes what the whole model computes on one machine: same greedy tokens, same hidden states."""

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from potluck.core.client.inference import InferenceSession
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.localswarm import split_blocks

from .conftest import ARCHS, LAYERS
from .swarm_helpers import InProcessSwarm

PROMPT = [5, 17, 33, 2, 40, 99, 120, 7, 8, 9, 60, 61]
NEW_TOKENS = 12


def reference(model_dir, prompt, steps):
    """Greedy tokens and post-norm hidden states of the plain transformers model, prefill then step by step."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    cache, hiddens, tokens = DynamicCache(config=model.config), [], []
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        for _ in range(steps):
            out = model.base_model(input_ids=ids, cache=cache, use_cache=True).last_hidden_state[:, -1]
            hiddens.append(out)
            token = int(model.lm_head(out).argmax(-1))
            tokens.append(token)
            ids = torch.tensor([[token]])
        generated = model.generate(torch.tensor([prompt]), max_new_tokens=steps, do_sample=False, eos_token_id=None, pad_token_id=None)
    assert generated[0, len(prompt):].tolist() == tokens  # the step-by-step reference is transformers' own greedy output
    return tokens, hiddens


async def swarm_hiddens(client, prompt, steps, chunk):
    """Prefill (in chunks of `chunk` tokens) and greedy decode through an InferenceSession, keeping hidden states."""
    session = InferenceSession(client.swarm, client.spec.hidden_size, len(prompt) + steps, push=client.push, timeout=10)
    await session.open()
    try:
        embedded = client.parts.embed_ids(torch.tensor([prompt]))
        for start in range(0, len(prompt), chunk):
            out = await session.step(embedded[:, start : start + chunk])
        hiddens, tokens = [], []
        for _ in range(steps):
            normed = client.parts.normed(out[:, -1])
            hiddens.append(normed)
            token = int(client.parts.lm_head(normed).argmax(-1))
            tokens.append(token)
            out = await session.step(client.parts.embed_ids(torch.tensor([[token]])))
        return tokens, hiddens
    finally:
        await session.close()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("num_servers", [1, 2, 3])
def test_swarm_equals_local_model(tiny_models, arch, num_servers):
    model_dir = tiny_models[arch]
    ref_tokens, ref_hiddens = reference(model_dir, PROMPT, NEW_TOKENS)
    with InProcessSwarm(model_dir, split_blocks(LAYERS, num_servers)) as swarm:
        for push in (True, False):
            client = DistributedModelForCausalLM.from_pretrained(str(model_dir), initial_peers=swarm.initial_peers, push=push, timeout=10)
            try:
                # prefill in one chunk, and in chunks of 5 on a warm cache (where a wrong mask offset shows up)
                for chunk in (len(PROMPT), 5):
                    tokens, hiddens = client.loop.run(swarm_hiddens(client, PROMPT, NEW_TOKENS, chunk))
                    assert tokens == ref_tokens, f"push={push} chunk={chunk}"
                    for step, (ours, theirs) in enumerate(zip(hiddens, ref_hiddens)):
                        diff = (ours - theirs).abs().max().item()
                        assert diff < 1e-4, f"push={push} chunk={chunk}: step {step} differs by {diff}"
                result = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None)
                assert result.token_ids == ref_tokens
                assert [(h.start_block, h.end_block) for h in result.route] == split_blocks(LAYERS, num_servers)
            finally:
                client.shutdown()
