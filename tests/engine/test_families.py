"""The 2026 families (Qwen3, Qwen3-MoE, Mixtral, gpt-oss, Gemma 3): exact by block range, sliding-window caches
that keep only their window (+ a rollback margin) yet roll back exactly, and block sizes that match transformers.

Swarm exactness (1, 2 and 3 servers, push or not, one-chunk and 5-token-chunk prefill past the window) is
`test_exactness.py`, whose ARCHS include these families. Tests marked "needs the session change" call
`ServerSession`, and pass once it uses `BlockStack.new_cache()` / `BlockStack.rollback()`.
"""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from potluck.core.model.families import ROLLBACK_MARGIN_TOKENS, CacheRollbackError, UnsupportedModelError, family_for
from potluck.core.model.families.gpt_oss import mxfp4_to_float
from potluck.core.model.families.shapes import EXPERTS, describe_block, total_parameters
from potluck.core.model.loading import load_blocks, load_client_parts, open_model
from potluck.core.model.tiny import ARCHITECTURES, TINY_SLIDING_WINDOW, make_tiny_model, tiny_config

from .conftest import LAYERS

NEW_ARCHS = ("qwen3", "qwen3_moe", "mixtral", "gpt_oss", "gemma3")
PROMPT = [5, 17, 33, 2, 40, 99, 120, 7, 8, 9, 60, 61, 70, 71, 72, 80, 81, 90, 91, 100]  # longer than the window (8)
STEPS = 8
SPLITS = ([(0, LAYERS)], [(0, 1), (1, 5), (5, 6)])


def meta_layer(config, index):
    with torch.device("meta"):
        return family_for(config).build_layer(config, index)


# ---- sizes: shapes against the real transformers layers ------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_block_weights_are_the_transformers_layer_parameters(arch):
    config = tiny_config(arch, layers=LAYERS, hidden=64, vocab_size=384)
    family = family_for(config)
    for index in range(LAYERS):
        real = {name: p.numel() for name, p in meta_layer(config, index).named_parameters()}
        ours = {w.name: w.parameters for w in family.block_weights(config, index)}
        assert ours == real, f"block {index}"


@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_block_and_active_bytes_count_all_experts_and_the_top_k(tiny_models, arch):
    spec = open_model(str(tiny_models[arch]))
    experts_per_token = getattr(spec.config, "num_experts_per_tok", None)
    for index in range(spec.num_blocks):
        params = dict(meta_layer(spec.config, index).named_parameters())
        expert = sum(p.numel() for n, p in params.items() if ".experts." in n)
        total = sum(p.numel() for p in params.values())
        assert spec.block_bytes(torch.float32, index) == 4 * total
        assert spec.block_bytes(torch.bfloat16, index) == 2 * total
        count = getattr(spec.config, "num_experts", None) or getattr(spec.config, "num_local_experts", 1)
        active = total - expert + (expert * experts_per_token // count if expert else 0)
        assert spec.active_block_bytes(torch.float32, index) == 4 * active
        assert (active < total) == (expert > 0)
    assert spec.block_bytes(torch.float32) == max(spec.block_bytes(torch.float32, i) for i in range(spec.num_blocks))


def test_the_whole_model_is_its_blocks_plus_the_client_parts(tiny_models):
    for arch in NEW_ARCHS:
        spec = open_model(str(tiny_models[arch]))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(spec.config)
        in_blocks = sum(total_parameters(spec.block_weights(i)) for i in range(spec.num_blocks))
        outside = sum(p.numel() for n, p in model.named_parameters() if ".layers." not in n)
        assert in_blocks + outside == sum(p.numel() for p in model.parameters()), arch


def test_block_matrices_list_experts_for_a_precision(tiny_models):
    spec = open_model(str(tiny_models["gpt_oss"]))
    hidden, inter, experts = spec.hidden_size, spec.config.intermediate_size, spec.config.num_local_experts
    matrices = spec.block_matrices(0)
    assert (2 * inter, hidden, experts) in matrices and (hidden, inter, experts) in matrices
    assert all(i > 1 for _, i, _ in matrices)  # vectors (norms, biases, sinks) are not matrices
    int8 = sum(o * i * n for o, i, n in matrices)  # one byte a weight, as a quantizer's figure would be applied
    vectors = sum(w.parameters for w in spec.block_weights(0) if not w.is_matrix)
    assert spec.block_bytes(torch.int8, 0) == int8 + vectors


@pytest.mark.parametrize("arch,expected", [
    ("gpt_oss", "a block holds 8 experts of which 2 run per token"),
    ("mixtral", "a block holds 4 experts of which 2 run per token"),
    ("gemma3", "all of which every token reads"),
])
def test_a_block_explained_in_words(tiny_models, arch, expected):
    spec = open_model(str(tiny_models[arch]))
    sentence = spec.describe_block(torch.bfloat16, spec.num_blocks - 1)
    assert expected in sentence
    experts = [w for w in spec.block_weights(spec.num_blocks - 1) if w.kind == EXPERTS]
    assert describe_block(spec.block_weights(spec.num_blocks - 1), 2) == sentence and bool(experts) == ("experts" in sentence)


@pytest.mark.parametrize("arch", [*NEW_ARCHS, "llama"])
def test_cache_bytes_are_what_a_session_cache_holds(tiny_models, arch):
    spec = open_model(str(tiny_models[arch]))
    stack = load_blocks(spec, 0, spec.num_blocks)
    cache, tokens = stack.new_cache(), 100
    with torch.inference_mode():
        stack(torch.randn(1, 60, spec.hidden_size), cache)
        stack(torch.randn(1, 40, spec.hidden_size), cache)
    held = {i: layer.keys.nbytes + layer.values.nbytes for i, layer in enumerate(cache.layers)}
    assert sum(held[i] for i in range(2, 5)) == spec.session_cache_bytes(torch.float32, tokens, 2, 5)
    per_token = spec.cache_bytes_per_token(torch.float32, session_tokens=tokens)
    assert per_token == math.ceil(sum(held.values()) / (tokens * spec.num_blocks))
    full = spec.kv_bytes_per_token(torch.float32)
    sliding = any(family_for(spec.config).layer_type(spec.config, i) == "sliding_attention" for i in range(spec.num_blocks))
    assert (per_token < full) == sliding  # sliding layers pay for their window only
    assert spec.cache_bytes_per_token(torch.float32, session_tokens=4) == full  # shorter than the window: every token


# ---- exact by block range, with the session cache ------------------------------------------------------------
def reference(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    cache, hiddens, tokens, ids = DynamicCache(config=model.config), [], [], torch.tensor([PROMPT])
    with torch.inference_mode():
        for _ in range(STEPS):
            out = model.base_model(input_ids=ids, cache=cache, use_cache=True).last_hidden_state[:, -1]
            hiddens.append(out)
            tokens.append(int(model.lm_head(out).argmax(-1)))
            ids = torch.tensor([[tokens[-1]]])
    return tokens, hiddens


@pytest.mark.slow
@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_block_ranges_equal_the_whole_model(tiny_models, arch):
    ref_tokens, ref_hiddens = reference(tiny_models[arch])
    spec = open_model(str(tiny_models[arch]))
    parts = load_client_parts(spec)
    for ranges in SPLITS:
        stacks = [load_blocks(spec, a, b) for a, b in ranges]
        for chunk in (len(PROMPT), 5, 3):  # chunks on a warm cache that cross the window's edge
            caches = [s.new_cache() for s in stacks]

            def run(hidden):
                with torch.inference_mode():
                    for stack, cache in zip(stacks, caches):
                        hidden = stack(hidden, cache)
                return hidden

            embedded = parts.embed_ids(torch.tensor([PROMPT]))
            for start in range(0, len(PROMPT), chunk):
                out = run(embedded[:, start : start + chunk])
            tokens = []
            for step in range(STEPS):
                normed = parts.normed(out[:, -1])
                assert (normed - ref_hiddens[step]).abs().max() < 1e-4, f"{ranges} chunk {chunk} step {step}"
                tokens.append(int(parts.lm_head(normed).argmax(-1)))
                out = run(parts.embed_ids(torch.tensor([[tokens[-1]]])))
            assert tokens == ref_tokens, f"{ranges} chunk {chunk}"


def run_steps(stack, cache, hidden, start, end):
    """Single-token steps at positions [start, end); their outputs by position."""
    with torch.inference_mode():
        return {p: stack(hidden[:, p : p + 1], cache) for p in range(start, end)}


@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_sliding_layers_keep_only_their_window_and_margin(tiny_models, arch):
    spec = open_model(str(tiny_models[arch]))
    stack = load_blocks(spec, 1, spec.num_blocks)
    cache, length = stack.new_cache(), 100
    with torch.inference_mode():
        stack(torch.randn(1, 90, spec.hidden_size), cache)
        for _ in range(length - 90):
            stack(torch.randn(1, 1, spec.hidden_size), cache)
    kinds = {i: family_for(spec.config).layer_type(spec.config, i) for i in range(stack.start, stack.end)}
    keep = TINY_SLIDING_WINDOW - 1 + ROLLBACK_MARGIN_TOKENS
    assert "sliding_attention" in kinds.values() and stack.cached_length(cache) == length
    assert stack.kept_tokens(cache) == {i: keep if kind == "sliding_attention" else length for i, kind in kinds.items()}
    assert all(cache.layers[i].keys.shape[-2] == cache.layers[i].values.shape[-2] == n for i, n in stack.kept_tokens(cache).items())


@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_rollbacks_within_the_margin_are_exact_and_beyond_it_refused(tiny_models, arch):
    spec = open_model(str(tiny_models[arch]))
    stack = load_blocks(spec, 1, spec.num_blocks)
    torch.manual_seed(0)
    margin, hidden, length = 8, torch.randn(1, 31, spec.hidden_size), 30
    cache = stack.new_cache(margin_tokens=margin)
    with torch.inference_mode():
        stack(hidden[:, :12], cache)  # a chunk across the window's edge
    first = run_steps(stack, cache, hidden, 12, length)
    for back in (1, 5, margin):  # a retry, a speculative step, the whole margin
        stack.rollback(cache, length - back)
        assert stack.cached_length(cache) == length - back
        again = run_steps(stack, cache, hidden, length - back, length)
        assert all(torch.equal(again[p], first[p]) for p in again), f"back {back}"
    with pytest.raises(CacheRollbackError, match="replay the session"):
        stack.rollback(cache, length - margin - 1)
    assert stack.cached_length(cache) == length  # all or nothing

    replayed = stack.new_cache(margin_tokens=margin)  # what a client's replay from history rebuilds
    with torch.inference_mode():
        stack(hidden[:, :12], replayed)
    run_steps(stack, replayed, hidden, 12, length)
    assert torch.equal(run_steps(stack, cache, hidden, length, length + 1)[length],
                       run_steps(stack, replayed, hidden, length, length + 1)[length])


def test_a_rollback_to_the_future_is_refused(tiny_models):
    spec = open_model(str(tiny_models["gemma3"]))
    stack = load_blocks(spec, 0, 3)
    cache = stack.new_cache()
    with torch.inference_mode():
        stack(torch.randn(1, 5, spec.hidden_size), cache)
    with pytest.raises(CacheRollbackError, match="holds 5 tokens"):
        stack.rollback(cache, 6)


# ---- the session on a server (needs the session change) ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt_oss", "gemma3"])
def test_server_session_retries_and_speculative_rollbacks_stay_exact(tiny_models, arch):
    from potluck.core.server.sessions import ServerSession, SessionError

    spec = open_model(str(tiny_models[arch]))
    stack = load_blocks(spec, 1, spec.num_blocks)
    session = ServerSession("s1", "client", stack, max_length=256)
    torch.manual_seed(1)
    hidden, length = torch.randn(1, 110, spec.hidden_size), 110
    session.run_step(0, hidden[:, :100])
    first = {p: session.run_step(p, hidden[:, p : p + 1]) for p in range(100, length)}
    kept = stack.kept_tokens(session.cache)
    assert max(kept.values()) == length and min(kept.values()) == TINY_SLIDING_WINDOW - 1 + ROLLBACK_MARGIN_TOKENS
    for back in (1, 8):
        again = {p: session.run_step(p, hidden[:, p : p + 1]) for p in range(length - back, length)}
        assert all(torch.equal(again[p], first[p]) for p in again)
    chunk = session.run_step(length - 10, hidden[:, length - 10 : length])  # a replayed chunk: same up to rounding
    assert (chunk - torch.cat([first[p] for p in range(length - 10, length)], 1)).abs().max() < 1e-5
    with pytest.raises(SessionError, match="replay the session"):
        session.run_step(length - ROLLBACK_MARGIN_TOKENS - 1, hidden[:, :1])
    assert session.position == length and session.history_upto(length).shape[1] == length


# ---- loading ---------------------------------------------------------------------------------------------------
def test_mxfp4_experts_expand_as_transformers_does():
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    torch.manual_seed(0)
    blocks = torch.randint(0, 256, (3, 6, 2, 16), dtype=torch.uint8)
    scales = torch.randint(118, 134, (3, 6, 2), dtype=torch.uint8)
    ours = mxfp4_to_float(blocks, scales, torch.float32)
    assert ours.shape == (3, 64, 6)
    assert torch.equal(ours, convert_moe_packed_tensors(blocks, scales, dtype=torch.float32))


def test_gpt_oss_blocks_load_from_an_mxfp4_checkpoint(tiny_models, tmp_path):
    """Experts stored as the released gpt-oss checkpoints store them load to the same layer."""
    from safetensors.torch import save_file

    spec = open_model(str(tiny_models["gpt_oss"]))
    names = spec.family.block_tensor_names(list(spec.checkpoint.weight_map), 1)
    tensors = spec.checkpoint.load_tensors(names)
    torch.manual_seed(2)
    for name in [n for n in names if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        experts, inp, out = tensors[name].shape  # GptOssExperts holds [experts, in, out]
        tensors[f"{name}_blocks"] = torch.randint(0, 256, (experts, out, inp // 32, 16), dtype=torch.uint8)
        tensors[f"{name}_scales"] = torch.randint(120, 130, (experts, out, inp // 32), dtype=torch.uint8)
        del tensors[name]
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(spec.config.to_dict()))
    layer = load_blocks(open_model(str(tmp_path)), 1, 2).layers[0]
    for name in ("gate_up_proj", "down_proj"):
        full = f"model.layers.1.mlp.experts.{name}"
        expected = mxfp4_to_float(tensors[f"{full}_blocks"], tensors[f"{full}_scales"])
        assert torch.equal(getattr(layer.mlp.experts, name), expected)


def test_gemma3_multimodal_checkpoint_serves_its_text_part(tmp_path):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    text = tiny_config("gemma3", layers=3, hidden=64, vocab_size=384)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    config = Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                          image_token_index=383, boi_token_index=381, eoi_token_index=382)
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(config).save_pretrained(tmp_path, max_shard_size="40KB")
    spec = open_model(str(tmp_path))
    assert (spec.family.name, spec.config.model_type, spec.num_blocks) == ("gemma3", "gemma3_text", 3)
    parts, stack = load_client_parts(spec), load_blocks(spec, 0, 3)
    names = list(spec.checkpoint.weight_map)
    client = spec.family.client_tensor_names(names, spec.config)
    read = [*client.embeddings, *client.final_norm, *client.lm_head, *spec.family.block_tensor_names(names, 0)]
    assert read and all(n.startswith("language_model.model.") for n in read)  # nothing of the vision tower
    model = Gemma3ForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.tensor([PROMPT])
    with torch.inference_mode():
        expected = model(input_ids=ids, logits_to_keep=1).logits[:, -1]
        ours = parts.logits(stack(parts.embed_ids(ids), stack.new_cache())[:, -1])
    assert (ours - expected).abs().max() < 1e-5


def test_unsupported_configs_are_refused_clearly():
    from transformers import Gemma3TextConfig, PhiConfig

    with pytest.raises(UnsupportedModelError, match="gpt_oss.*gemma3_text"):
        family_for(PhiConfig())
    embedder = Gemma3TextConfig(use_bidirectional_attention=True)
    with pytest.raises(UnsupportedModelError, match="bidirectional"):
        family_for(embedder).decoder_config(embedder)


@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_tiny_configs_slide_and_route(arch):
    config = tiny_config(arch, layers=LAYERS, hidden=64, vocab_size=384)
    family = family_for(config)
    kinds = {family.layer_type(config, i) for i in range(LAYERS)}
    assert family.sliding_window(config) == TINY_SLIDING_WINDOW < len(PROMPT) and "sliding_attention" in kinds
    if arch in ("qwen3", "gpt_oss", "gemma3"):
        assert kinds == {"sliding_attention", "full_attention"}
    experts = [w for i in range(LAYERS) for w in family.block_weights(config, i) if w.kind == EXPERTS]
    assert bool(experts) == (arch in ("qwen3_moe", "mixtral", "gpt_oss"))
    assert all(w.active == 2 and w.count in (4, 8) for w in experts)


def test_tiny_models_refuse_unknown_architectures(tmp_path):
    with pytest.raises(ValueError, match="choose one of llama, .*gpt_oss, gemma3"):
        make_tiny_model("gemma4", tmp_path / "x")
    with pytest.raises(ValueError, match="multiple of 32"):
        make_tiny_model("qwen3", tmp_path / "y", hidden=48)
