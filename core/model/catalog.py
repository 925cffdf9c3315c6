"""Choosing a model: a short list of good ones, each model's size at each precision, and whether friends' PCs can
hold it ("at int4 it needs about 40 GiB; this PC has 14 GiB free: about 3 PCs like this one").

The short list carries the shapes from each model's published config.json, so it can be shown offline; any other
hub id, folder or .gguf file is sized from its own config (for a hub id only config.json is fetched). Sizes count
every block's weights (all experts) at the precision, as `ModelSpec.block_bytes` does for what a server holds.
Light to import: the engine is loaded when a size is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from potluck.core.model.builtin import BUILTIN
from potluck.core.model.checkpoint import open_config
from potluck.core.numbers import GIB, format_bytes

PRECISIONS = ("none", "int8", "int4")
RESERVE_BYTES = 2 * GIB  # what a PC keeps for itself (the servers' default --reserve-gib)


@dataclass(frozen=True)
class CatalogEntry:
    model_id: str  # a Hugging Face id, or "builtin" for the model that ships with Potluck
    label: str
    config: dict = field(repr=False)  # the published config.json's shape fields
    note: str = ""

    @property
    def size(self) -> "ModelSize":
        """The blocks' bytes at each precision, computed ahead of time (tests/model/test_catalog.py checks them
        against `size_from_config`), so that the GUI can show them without loading the engine."""
        blocks, sizes = _SIZES[self.model_id]
        return ModelSize(self.model_id, blocks, dict(zip(PRECISIONS, sizes)), str(self.config.get("torch_dtype")))


def _llama(hidden, layers, heads, kv, inter, vocab, model_type="llama", tied=False, dtype="bfloat16") -> dict:
    return dict(model_type=model_type, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab, tie_word_embeddings=tied,
                torch_dtype=dtype)


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(BUILTIN, "SmolLM2-135M-Instruct (built in, try it)",
                 _llama(576, 30, 9, 3, 1536, 49152, tied=True, dtype="float32"), "answers short questions"),
    CatalogEntry("meta-llama/Llama-3.1-8B-Instruct", "Llama 3.1 8B Instruct", _llama(4096, 32, 32, 8, 14336, 128256)),
    CatalogEntry("meta-llama/Llama-3.1-70B-Instruct", "Llama 3.1 70B Instruct", _llama(8192, 80, 64, 8, 28672, 128256)),
    CatalogEntry("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5 7B Instruct",
                 _llama(3584, 28, 28, 4, 18944, 152064, model_type="qwen2")),
    CatalogEntry("Qwen/Qwen2.5-32B-Instruct", "Qwen2.5 32B Instruct",
                 _llama(5120, 64, 40, 8, 27648, 152064, model_type="qwen2")),
    CatalogEntry("Qwen/Qwen2.5-72B-Instruct", "Qwen2.5 72B Instruct",
                 _llama(8192, 80, 64, 8, 29568, 152064, model_type="qwen2")),
    CatalogEntry("mistralai/Mistral-7B-Instruct-v0.3", "Mistral 7B Instruct v0.3",
                 _llama(4096, 32, 32, 8, 14336, 32768, model_type="mistral")),
    CatalogEntry("openai/gpt-oss-120b", "gpt-oss-120b (mixture of experts, about 5B active)",
                 dict(model_type="gpt_oss", num_hidden_layers=36, hidden_size=2880, intermediate_size=2880,
                      num_local_experts=128, num_experts_per_tok=4, num_attention_heads=64, num_key_value_heads=8,
                      head_dim=64, sliding_window=128, vocab_size=201088, tie_word_embeddings=False,
                      torch_dtype="bfloat16")),
    CatalogEntry("Qwen/Qwen3-30B-A3B", "Qwen3 30B-A3B (mixture of experts, about 3B active)",
                 dict(model_type="qwen3_moe", num_hidden_layers=48, hidden_size=2048, intermediate_size=6144,
                      moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8, num_attention_heads=32,
                      num_key_value_heads=4, head_dim=128, vocab_size=151936, tie_word_embeddings=False,
                      torch_dtype="bfloat16")),
    CatalogEntry("Qwen/Qwen3-235B-A22B", "Qwen3 235B-A22B (mixture of experts, about 22B active)",
                 dict(model_type="qwen3_moe", num_hidden_layers=94, hidden_size=4096, intermediate_size=12288,
                      moe_intermediate_size=1536, num_experts=128, num_experts_per_tok=8, num_attention_heads=64,
                      num_key_value_heads=4, head_dim=128, vocab_size=151936, tie_word_embeddings=False,
                      torch_dtype="bfloat16")),
)


# model id -> (blocks, bytes of all blocks at none / int8 / int4), from size_from_config
_SIZES = {
    BUILTIN: (30, (424811520, 112942080, 66493440)),
    "meta-llama/Llama-3.1-8B-Instruct": (32, (13959168000, 7416578048, 4363124736)),
    "meta-llama/Llama-3.1-70B-Instruct": (80, (136904704000, 72734474240, 42787143680)),
    "Qwen/Qwen2.5-7B-Instruct": (28, (13051236352, 6934437888, 4079624192)),
    "Qwen/Qwen2.5-32B-Instruct": (64, (62413471744, 33160429568, 19507970048)),
    "Qwen/Qwen2.5-72B-Instruct": (80, (140429557760, 74609459200, 43891425280)),
    "mistralai/Mistral-7B-Instruct-v0.3": (32, (13959168000, 7416578048, 4363124736)),
    "openai/gpt-oss-120b": (36, (231341773824, 123057727488, 72475158528)),
    "Qwen/Qwen3-30B-A3B": (48, (59819581440, 31816728576, 18736791552)),
    "Qwen/Qwen3-235B-A22B": (94, (467697941504, 248611633152, 146324617216)),
}


@dataclass(frozen=True)
class ModelSize:
    model: str
    num_blocks: int
    blocks_bytes: dict  # precision -> bytes of all blocks ("none": at the checkpoint's own dtype)
    native_dtype: str


def fit_line(size: ModelSize, precision: str, free_bytes: int, reserve_bytes: int = RESERVE_BYTES) -> str:
    """Plain words: what the model needs at `precision` and how many PCs like this one hold it."""
    need = size.blocks_bytes[precision]
    usable = max(0, free_bytes - reserve_bytes)
    at = "at full precision" if precision == "none" else f"at {precision}"
    head = f"{at} it needs about {format_bytes(need)}; this PC has {format_bytes(free_bytes)} free"
    if usable <= 0:
        return f"{head}: too little to host even part of it"
    pcs = math.ceil(need / usable)
    if pcs <= 1:
        return f"{head}: this PC alone can hold it"
    return f"{head}: about {pcs} PCs like this one"


def size_from_config(config_dict: dict, model: str = "") -> ModelSize:
    """Every block's bytes at each precision, from a config (raises UnsupportedModelError for other families)."""
    import torch
    from transformers import AutoConfig

    from potluck.core.model.families import family_for
    from potluck.core.model.loading import DTYPES, ModelSpec

    values = {k: v for k, v in config_dict.items() if k != "model_type"}
    config = AutoConfig.for_model(config_dict["model_type"], **values)
    family = family_for(config)
    spec = ModelSpec(None, family.decoder_config(config), family)
    native = DTYPES.get(str(config_dict.get("torch_dtype") or config_dict.get("dtype") or "float32"), torch.float32)
    sizes = {p: sum(spec.block_bytes(native if p == "none" else torch.float32, i, p) for i in range(spec.num_blocks))
             for p in PRECISIONS}
    return ModelSize(model, spec.num_blocks, sizes, str(native).replace("torch.", ""))


def size_of(model: str) -> ModelSize:
    """The size of a short-list id ("builtin" too), a folder, a .gguf file or any hub id (only its config.json)."""
    for entry in CATALOG:
        if entry.model_id == model:
            return entry.size

    return size_from_config(open_config(model), model)
