"""Cross-session batching: concurrent sessions' decode steps share the linear layers' reads, and each session's
result is what it would be alone (greedy tokens identical; float32 hidden states within 1e-4; quantized blocks
bit for bit), with sessions of different lengths joining and leaving mid-batch, with push, and across a fail-over."""

import asyncio
import threading

import pytest
import torch

from potluck.core.client.local import LocalModelForCausalLM
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.model.loading import load_blocks, open_model
from potluck.core.server.batching import BatchedLinear, StepBatcher, make_batchable
from potluck.core.server.sessions import ServerSession

from .conftest import LAYERS
from .swarm_helpers import InProcessSwarm

PROMPTS = [[5, 17, 33], [40, 99, 120, 7, 8, 9, 60], [2, 3], [61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71]]


def test_linear_layers_are_wrapped_but_experts_are_not(tiny_models):
    spec = open_model(str(tiny_models["qwen3_moe"]))
    stack = load_blocks(spec, 0, 2)
    wrapped = make_batchable(stack)
    names = [n for n, m in stack.named_modules() if isinstance(m, BatchedLinear)]
    assert wrapped == len(names) > 0
    assert all("expert" not in n for n in names) and any("q_proj" in n for n in names)
    assert make_batchable(stack) == 0  # wrapping twice changes nothing


@pytest.mark.parametrize("quant, tolerance", [("none", 1e-4), ("int8", 0.0)])
def test_batched_steps_equal_lone_steps(tiny_models, quant, tolerance):
    spec = open_model(str(tiny_models["llama"]))
    stack = load_blocks(spec, 0, LAYERS, quant=quant)
    make_batchable(stack)
    sessions = [ServerSession(f"s{i}", "peer", stack, 64) for i in range(len(PROMPTS))]
    torch.manual_seed(0)
    prefills = [torch.randn(1, len(p), spec.hidden_size) for p in PROMPTS]
    steps = [torch.randn(1, 1, spec.hidden_size) for _ in PROMPTS]
    alone = []
    for session, prefill, step in zip(sessions, prefills, steps):
        session.run_step(0, prefill)
        alone.append(session.run_step(prefill.shape[1], step))
    for session, prefill in zip(sessions, prefills):
        stack.rollback(session.cache, prefill.shape[1])
        session._crop_history(prefill.shape[1])

    async def together():
        batcher = StepBatcher(window_seconds=0.5, open_sessions=lambda: len(sessions))
        runs = [batcher.run(lambda s=s, p=p, x=x: s.run_step(p.shape[1], x), (0, LAYERS))
                for s, p, x in zip(sessions, prefills, steps)]
        out = await asyncio.gather(*runs)
        return out, batcher

    batched, batcher = asyncio.run(together())
    assert batcher.batches_run == 1 and batcher.steps_batched == len(PROMPTS)  # they really ran as one batch
    for a, b in zip(alone, batched):
        assert (a - b).abs().max().item() <= tolerance


@pytest.mark.slow
@pytest.mark.parametrize("push", [True, False])
def test_concurrent_generations_through_a_swarm_are_exact(tiny_models, push):
    model_dir = str(tiny_models["llama"])
    local = LocalModelForCausalLM.from_pretrained(model_dir)
    lengths = [6, 14, 3, 10]  # sessions leave the batch at different times
    expected = [local.generate(p, max_new_tokens=n, eos_token_id=None).token_ids for p, n in zip(PROMPTS, lengths)]
    with InProcessSwarm(model_dir, [(0, 3), (3, LAYERS)]) as swarm:
        client = DistributedModelForCausalLM.from_pretrained(model_dir, initial_peers=swarm.initial_peers, push=push,
                                                             timeout=20)
        try:
            results = [None] * len(PROMPTS)

            def one(i: int) -> None:
                if i == 3:
                    threading.Event().wait(0.3)  # a session that joins while the others are mid-batch
                results[i] = client.generate(PROMPTS[i], max_new_tokens=lengths[i], eos_token_id=None).token_ids

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert results == expected
        finally:
            client.shutdown()
        assert sum(s.batcher.batches_run for s in swarm.servers) > 0  # some steps did meet
