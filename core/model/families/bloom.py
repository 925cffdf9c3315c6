"""BLOOM: ALiBi positions, LayerNorm, a fused query-key-value projection; the word-embedding LayerNorm runs on the
client."""

from __future__ import annotations

import torch
from torch import nn

from potluck.core.model.families.base import (
    ClientParts,
    ClientTensorNames,
    Family,
    linear_head,
    materialize,
    modeling_module,
)
from potluck.core.model.families.shapes import ATTENTION, MLP, NORM, WeightShape


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
        return modeling_module("bloom").BloomBlock(config, layer_idx=index)

    def stack_extras(self, config):
        return nn.ModuleDict()

    def run_stack(self, stack, hidden, cache):
        from transformers.masking_utils import create_causal_mask

        batch, length = hidden.shape[:2]
        kv_length = cache.get_mask_sizes(length, stack.start)[0] if cache is not None else length
        slopes = modeling_module("bloom")._get_alibi_slopes(stack.config.n_head, hidden.device)
        alibi = (slopes[:, None, None] * torch.arange(kv_length, device=hidden.device)).repeat(batch, 1, 1).to(hidden.dtype)
        mask = create_causal_mask(config=stack.config, inputs_embeds=hidden, attention_mask=None, cache=cache, layer_idx=stack.start)
        for layer in stack.layers:
            hidden = layer(hidden, layer_past=cache, attention_mask=mask, use_cache=cache is not None, alibi=alibi)[0]
        return hidden

    def block_weights(self, config, index):
        h = config.hidden_size
        weights = []
        for name, out, inp, kind in (("self_attention.query_key_value", 3 * h, h, ATTENTION), ("self_attention.dense", h, h, ATTENTION),
                                     ("mlp.dense_h_to_4h", 4 * h, h, MLP), ("mlp.dense_4h_to_h", h, 4 * h, MLP),
                                     ("input_layernorm", h, 1, NORM), ("post_attention_layernorm", h, 1, NORM)):
            weights += [WeightShape(f"{name}.weight", out, inp, kind), WeightShape(f"{name}.bias", out, 1, kind)]
        return weights

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
        embed = materialize(embed, tensors, f"{root}word_embeddings.", dtype)
        embed_norm = materialize(embed_norm, tensors, f"{root}word_embeddings_layernorm.", dtype)
        final_norm = materialize(final_norm, tensors, f"{root}ln_f.", dtype)
        head = linear_head(config, tensors, names.lm_head, names.embeddings[0], dtype)
        return ClientParts(_BloomEmbedding(embed, embed_norm), final_norm, head)
