"""Test helpers for GGUF checkpoints: a small converter from transformers folders to GGUF files, greedy decoding
both through Potluck's block loading and through transformers' own GGUF loader, and page-cache residency (Linux).

The converter writes llama.cpp's layout (`blk.N.attn_q.weight`, Q and K rows interleaved for llama) in F32, F16,
BF16, Q8_0, Q4_0, Q4_1 (quantized by `gguf.quants.quantize`) and Q4_K / Q6_K (random blocks with small float16
scales: gguf cannot quantize those types).
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from potluck.core.model.loading import load_blocks, load_client_parts
from potluck.core.model.tiny import CHAT_TEMPLATE

Q = gguf.GGMLQuantizationType
# tensor kind -> storage type; a type whose block does not divide a row falls back to F32 (as llama.cpp falls back)
MIXED = {"token_embd": "Q8_0", "attn_q": "Q8_0", "attn_k": "Q4_0", "attn_v": "Q4_1", "attn_output": "F16",
         "ffn_gate": "BF16", "ffn_up": "Q4_1", "ffn_down": "Q4_0", "output": "Q8_0"}
K_QUANTS = {"token_embd": "Q6_K", "attn_q": "Q4_K", "attn_k": "Q4_K", "attn_v": "Q6_K", "attn_output": "Q6_K",
            "ffn_gate": "Q4_K", "ffn_up": "Q4_K", "ffn_down": "Q8_0", "output": "Q6_K"}
# case -> (transformers architecture, hidden size, storage types, general.name)
CASES = {
    "llama-mixed": ("llama", 64, MIXED, "Tiny Llama"),
    "llama-f32": ("llama", 64, {}, "Tiny Llama F32"),
    "mistral-kquants": ("mistral", 256, K_QUANTS, "Mistral Tiny v0.3"),  # llama.cpp writes Mistral as "llama"
    "qwen2-mixed": ("qwen2", 64, MIXED, "Tiny Qwen2"),  # tied embeddings, q/k/v biases
    "qwen2-kquants": ("qwen2", 256, K_QUANTS, "Tiny Qwen2 K"),
}
# where each K-quant block keeps its float16 scales (byte offset, value): values stay small and centred
_K_SCALES = {Q.Q4_K: ((0, 2e-4), (2, 1.5e-3)), Q.Q6_K: ((208, 2e-5),)}


def encode(data: np.ndarray, type_name: str, rng) -> tuple[np.ndarray, object]:
    qtype = Q[type_name]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if qtype == Q.F32 or data.ndim < 2 or data.shape[-1] % block:
        return data.astype(np.float32), None
    if qtype == Q.F16:
        return data.astype(np.float16), None
    if qtype in _K_SCALES:
        blocks = rng.integers(0, 256, size=(data.size // block, size), dtype=np.uint8)
        for offset, value in _K_SCALES[qtype]:
            blocks[:, offset : offset + 2] = np.full((len(blocks), 1), value, np.float16).view(np.uint8)
        return blocks.reshape(*data.shape[:-1], data.shape[-1] // block * size), qtype
    return gguf.quants.quantize(data, qtype), qtype


def _llama_cpp_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary layout (two halves per head) -> llama.cpp's (interleaved pairs), as its converter writes Q and K."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _add_tokenizer(writer, model_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = tokenizer.backend_tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    specials = set(tokenizer.all_special_tokens) | {"<|system|>", "<|user|>", "<|assistant|>"}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in specials else 1 for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["</s>"])
    writer.add_pad_token_id(vocab["<pad>"])
    writer.add_chat_template(CHAT_TEMPLATE)


def write_gguf(model_dir, out, *, name: str, types: dict, seed: int = 0, architecture: str | None = None,
               tokenizer: bool = True):
    """Convert a transformers Llama/Mistral/Qwen2 folder to one GGUF file the way llama.cpp lays it out."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = model.config
    arch = architecture or ("qwen2" if config.model_type == "qwen2" else "llama")
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    if arch == "llama":
        writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    if tokenizer:
        _add_tokenizer(writer, model_dir)
    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), config.num_hidden_layers)
    rng = np.random.default_rng(seed)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        data = tensor.numpy()
        if arch == "llama" and gguf_name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = config.num_attention_heads if "attn_q" in gguf_name else config.num_key_value_heads
            data = _llama_cpp_rows(data, heads)
        kind = gguf_name.split(".")[-2]
        encoded, raw_dtype = encode(data, types.get(kind, "F32") if gguf_name.endswith(".weight") else "F32", rng)
        writer.add_tensor(gguf_name, encoded, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def gguf_file(folder):
    (path,) = folder.glob("*.gguf")
    return path


def greedy(spec, split, prompt, steps):
    """Greedy tokens and last-position logits of blocks loaded range by range, plus the client's parts."""
    stacks, parts = [load_blocks(spec, start, end) for start, end in split], load_client_parts(spec)
    cache, ids, tokens, logits = DynamicCache(config=spec.config), torch.tensor([prompt]), [], []
    with torch.inference_mode():
        for _ in range(steps):
            hidden = parts.embed_ids(ids)
            for stack in stacks:
                hidden = stack(hidden, cache)
            logits.append(parts.logits(hidden[:, -1]))
            tokens.append(int(logits[-1].argmax(-1)))
            ids = torch.tensor([[tokens[-1]]])
    return tokens, logits


def reference(path, prompt, steps):
    """transformers' own GGUF load: its state dict, greedy tokens and last-position logits."""
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    cache, ids, tokens, logits = DynamicCache(config=model.config), torch.tensor([prompt]), [], []
    with torch.inference_mode():
        for _ in range(steps):
            out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
            logits.append(out.logits[:, -1])
            tokens.append(int(logits[-1].argmax(-1)))
            ids = torch.tensor([[tokens[-1]]])
        generated = model.generate(torch.tensor([prompt]), max_new_tokens=steps, do_sample=False, eos_token_id=None,
                                   pad_token_id=None)
    assert generated[0, len(prompt):].tolist() == tokens  # the stepwise reference is transformers' greedy output
    return model, tokens, logits


def spans_of(checkpoint, names):
    return sorted((checkpoint.spans[n].start, checkpoint.spans[n].end) for n in names)




def drop_cached(path: Path) -> None:
    """Write the file out and evict it from the page cache, so that what is read next shows in `resident_pages`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_pages(path: Path) -> np.ndarray:
    """Which of the file's pages are in the page cache (Linux `mincore`; looking does not read them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap failed")
    try:
        pages = (ctypes.c_ubyte * -(-size // mmap.PAGESIZE))()
        if libc.mincore(ctypes.c_void_p(address), size, pages) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return (np.frombuffer(bytes(pages), np.uint8) & 1).astype(bool)
    finally:
        libc.munmap(ctypes.c_void_p(address), size)


def page_mask(ranges, total_pages: int) -> np.ndarray:
    """The pages that byte ranges [start, end) touch."""
    mask = np.zeros(total_pages, bool)
    for start, end in ranges:
        mask[start // mmap.PAGESIZE : (end - 1) // mmap.PAGESIZE + 1] = True
    return mask
