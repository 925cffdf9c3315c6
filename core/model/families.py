"""Architecture families: how to build a range of transformer blocks and the client-side parts of a model.

Each family knows its checkpoint's tensor names, how to build decoder layers with their *absolute* layer
indices (so a server for blocks 4-7 keeps cache slots 4-7), and how to run them exactly as the whole model would:
positions and masks are sized against the server's first layer, not layer 0 (see shared/ENGINE_NOTES.md).

- `LlamaFamily`: Llama 2/3, Mistral, Qwen2 (rotary positions, RMSNorm, grouped-query attention, sliding windows).
- `BloomFamily`: BLOOM (ALiBi positions, LayerNorm, word-embedding LayerNorm on the client).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn


class UnsupportedModelError(ValueError):
    """The model's architecture is not one Potluck can split."""


def _modeling_module(model_type: str):
    return importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")


def _materialize(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> nn.Module:
    """Load `prefix`-named tensors into a module built on the meta device; every parameter must be present."""
    state = {name[len(prefix):]: t.to(dtype) for name, t in tensors.items() if name.startswith(prefix)}
    expected = set(module.state_dict().keys())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise UnsupportedModelError(f"checkpoint tensors under {prefix!r} do not match the architecture: {detail}")
    module.load_state_dict(state, assign=True, strict=True)
    return module.eval().requires_grad_(False)


class BlockStack(nn.Module):
    """Blocks [start, end) of one model; `forward(hidden, cache)` continues the cache's sequence."""

    def __init__(self, family: "Family", config, start: int, end: int, layers: nn.ModuleList):
        super().__init__()
        self.family, self.config, self.start, self.end = family, config, start, end
        self.layers = layers
        self.extras = family.stack_extras(config)

    def forward(self, hidden: torch.Tensor, cache=None) -> torch.Tensor:
        return self.family.run_stack(self, hidden, cache)

    def cached_length(self, cache) -> int:
        return 0 if cache is None else cache.get_seq_length(self.start)

    def extended(self, after: "BlockStack") -> "BlockStack":
        """This stack followed by `after` (which must start where this one ends), sharing both's weights."""
        if after.start != self.end:
            raise ValueError(f"blocks {after.start}:{after.end} do not continue {self.start}:{self.end}")
        return self._view(self.start, after.end, nn.ModuleList([*self.layers, *after.layers]))

    def _view(self, start: int, end: int, layers: nn.ModuleList) -> "BlockStack":
        view = BlockStack.__new__(BlockStack)
        nn.Module.__init__(view)
        view.family, view.config, view.start, view.end = self.family, self.config, start, end
        view.layers, view.extras = layers, self.extras
        return view

    def subrange(self, start: int, end: int) -> "BlockStack":
        """Blocks [start, end) of this stack, sharing its weights (a session may use part of a server's range)."""
        if not self.start <= start < end <= self.end:
            raise ValueError(f"blocks {start}:{end} are not within {self.start}:{self.end}")
        if (start, end) == (self.start, self.end):
            return self
        return self._view(start, end, nn.ModuleList(self.layers[start - self.start : end - self.start]))


@dataclass(frozen=True)
class ClientTensorNames:
    embeddings: tuple[str, ...]
    final_norm: tuple[str, ...]
    lm_head: tuple[str, ...]


class Family:
    name = "base"
    model_types: tuple[str, ...] = ()
    attention_implementation = "sdpa"  # what transformers itself picks for the family; exactness is tested against it

    def layer_prefix(self, names: list[str], index: int) -> str: ...
    def build_layer(self, config, index: int) -> nn.Module: ...
    def stack_extras(self, config) -> nn.ModuleDict: ...
    def run_stack(self, stack: BlockStack, hidden: torch.Tensor, cache) -> torch.Tensor: ...
    def client_tensor_names(self, names: list[str], config) -> ClientTensorNames: ...
    def build_client_parts(self, config, tensors, names: ClientTensorNames, dtype) -> "ClientParts": ...

    def build_stack(self, config, start: int, end: int, tensors, weight_names: list[str], dtype) -> BlockStack:
        layers = nn.ModuleList()
        for index in range(start, end):
            with torch.device("meta"):
                layer = self.build_layer(config, index)
            layers.append(_materialize(layer, tensors, self.layer_prefix(weight_names, index), dtype))
        return BlockStack(self, config, start, end, layers)

    def block_tensor_names(self, weight_names: list[str], index: int) -> list[str]:
        prefix = self.layer_prefix(weight_names, index)
        return [n for n in weight_names if n.startswith(prefix)]

    def block_parameter_count(self, config) -> int:
        with torch.device("meta"):
            layer = self.build_layer(config, 0)
        return sum(p.numel() for p in layer.parameters())


class ClientParts(nn.Module):
    """What the client runs itself: embeddings before the first block, final norm and LM head after the last."""

    def __init__(self, embed: nn.Module, final_norm: nn.Module, lm_head: nn.Linear):
        super().__init__()
        self.embed, self.final_norm, self.lm_head = embed, final_norm, lm_head

    @torch.inference_mode()
    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids)

    @torch.inference_mode()
    def normed(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.final_norm(hidden)

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.final_norm(hidden))


def _linear_head(config, tensors, head_names, embed_name, dtype) -> nn.Linear:
    weight = tensors[head_names[0]] if head_names else tensors[embed_name]  # tied: the head is the embedding
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    head.load_state_dict({"weight": weight.to(dtype)}, assign=True)
    return head.eval().requires_grad_(False)


class LlamaFamily(Family):
    name = "llama"
    model_types = ("llama", "mistral", "qwen2")
    _class_prefix = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}

    def _classes(self, config):
        module = _modeling_module(config.model_type)
        prefix = self._class_prefix[config.model_type]
        return module, getattr(module, f"{prefix}DecoderLayer"), getattr(module, f"{prefix}RotaryEmbedding"), getattr(module, f"{prefix}RMSNorm")

    def layer_prefix(self, names, index):
        return f"model.layers.{index}."

    def build_layer(self, config, index):
        return self._classes(config)[1](config, index)

    def stack_extras(self, config):
        return nn.ModuleDict({"rotary": self._classes(config)[2](config=config)})

    @staticmethod
    def layer_type(config, index: int) -> str:
        layer_types = getattr(config, "layer_types", None)
        if layer_types:
            return layer_types[index]
        return "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"

    def run_stack(self, stack, hidden, cache):
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        config, past = stack.config, stack.cached_length(cache)
        position_ids = torch.arange(past, past + hidden.shape[1], device=hidden.device).unsqueeze(0)
        position_embeddings = stack.extras["rotary"](hidden, position_ids=position_ids)
        types = [self.layer_type(config, i) for i in range(stack.start, stack.end)]
        masks = {}
        for kind in dict.fromkeys(types):  # size each mask against the first of *our* layers of that kind
            builder = create_sliding_window_causal_mask if kind == "sliding_attention" else create_causal_mask
            masks[kind] = builder(
                config=config, inputs_embeds=hidden, attention_mask=None, cache=cache,
                position_ids=position_ids, layer_idx=stack.start + types.index(kind),
            )
        for layer, kind in zip(stack.layers, types):
            hidden = layer(
                hidden, attention_mask=masks[kind], position_embeddings=position_embeddings,
                position_ids=position_ids, cache=cache, use_cache=cache is not None,
            )
        return hidden

    def client_tensor_names(self, names, config):
        head = () if getattr(config, "tie_word_embeddings", False) or "lm_head.weight" not in names else ("lm_head.weight",)
        return ClientTensorNames(("model.embed_tokens.weight",), ("model.norm.weight",), head)

    def build_client_parts(self, config, tensors, names, dtype):
        _, _, _, norm_cls = self._classes(config)
        embed = nn.Embedding(config.vocab_size, config.hidden_size, device="meta")
        embed.load_state_dict({"weight": tensors[names.embeddings[0]].to(dtype)}, assign=True)
        with torch.device("meta"):
            norm = norm_cls(config.hidden_size, eps=config.rms_norm_eps)
        norm = _materialize(norm, tensors, "model.norm.", dtype)
        head = _linear_head(config, tensors, names.lm_head, names.embeddings[0], dtype)
        return ClientParts(embed.eval().requires_grad_(False), norm, head)


class _BloomEmbedding(nn.Module):
    def __init__(self, embed: nn.Embedding, norm: nn.LayerNorm):
        super().__init__()
        self.embed, self.norm = embed, norm

    def forward(self, input_ids):
        return self.norm(self.embed(input_ids))


class BloomFamily(Family):
    name = "bloom"
    model_types = ("bloom",)
    attention_implementation = "eager"  # BLOOM's attention adds ALiBi itself and needs a materialised causal mask

    @staticmethod
    def _root(names) -> str:  # original BLOOM checkpoints have no "transformer." prefix
        return "transformer." if any(n.startswith("transformer.") for n in names) else ""

    def layer_prefix(self, names, index):
        return f"{self._root(names)}h.{index}."

    def build_layer(self, config, index):
        return _modeling_module("bloom").BloomBlock(config, layer_idx=index)

    def stack_extras(self, config):
        return nn.ModuleDict()

    def run_stack(self, stack, hidden, cache):
        from transformers.masking_utils import create_causal_mask

        batch, length = hidden.shape[:2]
        kv_length = cache.get_mask_sizes(length, stack.start)[0] if cache is not None else length
        slopes = _modeling_module("bloom")._get_alibi_slopes(stack.config.n_head, hidden.device)
        alibi = (slopes[:, None, None] * torch.arange(kv_length, device=hidden.device)).repeat(batch, 1, 1).to(hidden.dtype)
        mask = create_causal_mask(config=stack.config, inputs_embeds=hidden, attention_mask=None, cache=cache, layer_idx=stack.start)
        for layer in stack.layers:
            hidden = layer(hidden, layer_past=cache, attention_mask=mask, use_cache=cache is not None, alibi=alibi)[0]
        return hidden

    def client_tensor_names(self, names, config):
        root = self._root(names)
        head = ("lm_head.weight",) if "lm_head.weight" in names and not config.tie_word_embeddings else ()
        return ClientTensorNames(
            (f"{root}word_embeddings.weight", f"{root}word_embeddings_layernorm.weight", f"{root}word_embeddings_layernorm.bias"),
            (f"{root}ln_f.weight", f"{root}ln_f.bias"),
            head,
        )

    def build_client_parts(self, config, tensors, names, dtype):
        root = names.embeddings[0][: -len("word_embeddings.weight")]
        with torch.device("meta"):
            embed = nn.Embedding(config.vocab_size, config.hidden_size)
            embed_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
            final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        embed = _materialize(embed, tensors, f"{root}word_embeddings.", dtype)
        embed_norm = _materialize(embed_norm, tensors, f"{root}word_embeddings_layernorm.", dtype)
        final_norm = _materialize(final_norm, tensors, f"{root}ln_f.", dtype)
        head = _linear_head(config, tensors, names.lm_head, names.embeddings[0], dtype)
        return ClientParts(_BloomEmbedding(embed, embed_norm), final_norm, head)


FAMILIES: tuple[Family, ...] = (LlamaFamily(), BloomFamily())


def family_for(config) -> Family:
    for family in FAMILIES:
        if config.model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise UnsupportedModelError(f"model type {config.model_type!r} is not supported yet (supported: {supported})")
