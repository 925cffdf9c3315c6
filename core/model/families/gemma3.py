"""Gemma 3 (text): five sliding-window layers to one global layer (`config.layer_types`), a local and a global
rotary (different base and scaling, chosen per layer type), (1 + w) RMSNorms before and after attention and
feed-forward, per-head q/k norms, embeddings scaled by sqrt(hidden_size), tied LM head, optional final-logit
softcapping. A multimodal `gemma3` checkpoint is served through its text part (its `text_config` and the
language model's tensors); the vision tower stays unused.
"""

from __future__ import annotations

import torch

from potluck.core.model.families.base import UnsupportedModelError, modeling_module
from potluck.core.model.families.decoder import DecoderFamily
from potluck.core.model.families.shapes import attention_weights, gated_mlp_weights, norm_weights

ROOTS = ("model.language_model.", "language_model.model.", "model.")  # multimodal (transformers 5, original), text


class Gemma3Family(DecoderFamily):
    name = "gemma3"
    model_types = ("gemma3_text", "gemma3")
    classes_by_type = {"gemma3_text": ("gemma3", "Gemma3")}
    passes_use_cache = False  # Gemma3TextModel calls its layers without it

    def decoder_config(self, config):
        text = config
        if config.model_type == "gemma3":
            text = config.text_config
            text.final_logit_softcapping = None  # Gemma3ForConditionalGeneration does not softcap its logits
        if getattr(text, "use_bidirectional_attention", False):
            raise UnsupportedModelError("this Gemma 3 config uses bidirectional attention (an embedding model), "
                                        "not a text generator Potluck can serve")
        return text

    def root(self, names):
        for root in ROOTS:
            if any(n.startswith(f"{root}layers.") for n in names):
                return root
        return "model."

    def position_embeddings(self, stack, hidden, position_ids, kinds):
        return {kind: stack.extras["rotary"](hidden, position_ids, kind) for kind in kinds}

    def build_embedding(self, config, weight, dtype):
        embedding_cls = modeling_module("gemma3").Gemma3TextScaledWordEmbedding
        scale = config.hidden_size**0.5
        with torch.device("meta"):
            embed = embedding_cls(config.vocab_size, config.hidden_size, config.pad_token_id, embed_scale=scale)
        embed.load_state_dict({"weight": weight.to(dtype)}, assign=True)
        embed.embed_scale = torch.tensor(scale)  # a non-persistent buffer: not in the checkpoint, built on meta
        return embed.eval().requires_grad_(False)

    def logit_softcap(self, config):
        return getattr(config, "final_logit_softcapping", None)

    def block_weights(self, config, index):
        bias, hidden = bool(config.attention_bias), config.hidden_size
        return [*attention_weights(config, qkv_bias=bias, o_bias=bias, qk_norm=True),
                *gated_mlp_weights(hidden, config.intermediate_size),
                *norm_weights(hidden, "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                              "post_feedforward_layernorm")]


