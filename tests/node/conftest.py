"""Fixtures for the node's tests: a tiny model (hidden 64, 4 blocks) and a greedy reference run with transformers."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from potluck.core.model.tiny import make_tiny_model

    folder = tmp_path_factory.mktemp("node-model") / "tiny-llama"
    return str(make_tiny_model("llama", folder, layers=4, hidden=64, seed=3))


@pytest.fixture(scope="session")
def greedy_reference(tiny_model):
    """greedy_reference(ids, n) -> (new token ids, text): the plain local model's greedy reply, stopped at EOS as
    the swarm client stops (the EOS token itself counted, not shown)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    def run(ids: list[int], max_new_tokens: int) -> tuple[list[int], str]:
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
        new = out[0, len(ids):].tolist()
        if model.config.eos_token_id in new:
            new = new[: new.index(model.config.eos_token_id) + 1]
        return new, tokenizer.decode(new, skip_special_tokens=True)

    run.tokenizer = tokenizer
    return run
