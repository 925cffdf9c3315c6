"""`DecoderFamily`: the shared shape of rotary decoders (Llama and its descendants), run exactly by block range.

A decoder layer of these families is called as the whole model calls it: hidden states, the attention mask of its
layer type (full or sliding window), the rotary (cos, sin) of its positions, and the shared cache. What differs
between families (layer classes, which layers slide, rotary variants, embedding scale, LM-head softcapping, MoE
blocks) is a class attribute or a small override in the family's module.

Exactness (shared/ENGINE_NOTES.md): positions come from the cache length of the stack's *first* layer, and each
mask is sized against the first of the stack's layers of that type, because layers keep their absolute indices.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from potluck.core.model.families.base import (
    ClientParts,
    ClientTensorNames,
    Family,
    UnsupportedModelError,
    linear_head,
    materialize,
    modeling_module,
)


class DecoderFamily(Family):
    classes_by_type: dict[str, tuple[str, str]] = {}  # model_type -> (transformers modeling module, class prefix)
    passes_use_cache = True  # whether the whole model passes `use_cache` to its layers

    def classes(self, config) -> SimpleNamespace:
        try:
            module_name, prefix = self.classes_by_type[config.model_type]
        except KeyError:
            raise UnsupportedModelError(f"the {self.name} family has no layer classes for {config.model_type!r}") from None
        module = modeling_module(module_name)
        return SimpleNamespace(
            layer=getattr(module, f"{prefix}DecoderLayer"), rotary=getattr(module, f"{prefix}RotaryEmbedding"),
            norm=getattr(module, f"{prefix}RMSNorm"),
        )

    def root(self, names: list[str]) -> str:
        """What every decoder tensor name starts with ("model." for a ...ForCausalLM checkpoint)."""
        return "model."

    def layer_prefix(self, names, index):
        return f"{self.root(names)}layers.{index}."

    def build_layer(self, config, index):
        return self.classes(config).layer(config, index)

    def stack_extras(self, config):
        return nn.ModuleDict({"rotary": self.classes(config).rotary(config=config)})

    def layer_type(self, config, index: int) -> str:
        layer_types = getattr(config, "layer_types", None)
        if layer_types:
            return layer_types[index]
        return "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"

    def position_embeddings(self, stack, hidden: torch.Tensor, position_ids: torch.Tensor, kinds) -> dict:
        """(cos, sin) for each layer type in `kinds`; one rotary for all of them here."""
        shared = stack.extras["rotary"](hidden, position_ids=position_ids)
        return {kind: shared for kind in kinds}

    def run_stack(self, stack, hidden, cache):
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        config, past = stack.config, stack.cached_length(cache)
        position_ids = torch.arange(past, past + hidden.shape[1], device=hidden.device).unsqueeze(0)
        types = [self.layer_type(config, i) for i in range(stack.start, stack.end)]
        kinds = list(dict.fromkeys(types))
        rotary = self.position_embeddings(stack, hidden, position_ids, kinds)
        masks = {}
        for kind in kinds:  # size each mask against the first of *our* layers of that kind
            builder = create_sliding_window_causal_mask if kind == "sliding_attention" else create_causal_mask
            masks[kind] = builder(
                config=config, inputs_embeds=hidden, attention_mask=None, cache=cache,
                position_ids=position_ids, layer_idx=stack.start + types.index(kind),
            )
        extra = {"use_cache": cache is not None} if self.passes_use_cache else {}
        for layer, kind in zip(stack.layers, types):
            hidden = layer(
                hidden, attention_mask=masks[kind], position_embeddings=rotary[kind],
                position_ids=position_ids, cache=cache, **extra,
            )
        return hidden

    # ---- the client's parts ----------------------------------------------------------------------------------
    def client_tensor_names(self, names, config):
        root = self.root(names)
        tied = getattr(config, "tie_word_embeddings", False)
        head = () if tied or "lm_head.weight" not in names else ("lm_head.weight",)
        return ClientTensorNames((f"{root}embed_tokens.weight",), (f"{root}norm.weight",), head)

    def build_embedding(self, config, weight: torch.Tensor, dtype) -> nn.Module:
        # given its weight, nn.Embedding skips its random init (on "meta" that init alone imported torch._dynamo:
        # a second of every cold start)
        embed = nn.Embedding(config.vocab_size, config.hidden_size, _weight=weight.to(dtype), _freeze=True)
        return embed.eval().requires_grad_(False)

    def logit_softcap(self, config) -> float | None:
        return None

    def build_client_parts(self, config, tensors, names, dtype):
        embed = self.build_embedding(config, tensors[names.embeddings[0]], dtype)
        with torch.device("meta"):
            norm = self.classes(config).norm(config.hidden_size, eps=config.rms_norm_eps)
        norm = materialize(norm, tensors, names.final_norm[0][: -len("weight")], dtype, self.keep_float32)
        head = linear_head(config, tensors, names.lm_head, names.embeddings[0], dtype, self.logit_softcap(config))
        return ClientParts(embed, norm, head)
