"""Qwen3 (dense): Llama's layout plus per-head RMSNorms on queries and keys; layers from `max_window_layers` on may
use a sliding window (`config.layer_types`)."""

from __future__ import annotations

from potluck.core.model.families.decoder import DecoderFamily
from potluck.core.model.families.shapes import attention_weights, gated_mlp_weights, norm_weights


class Qwen3Family(DecoderFamily):
    name = "qwen3"
    model_types = ("qwen3",)
    classes_by_type = {"qwen3": ("qwen3", "Qwen3")}

    def block_weights(self, config, index):
        bias = bool(config.attention_bias)
        return [*attention_weights(config, qkv_bias=bias, o_bias=bias, qk_norm=True),
                *gated_mlp_weights(config.hidden_size, config.intermediate_size),
                *norm_weights(config.hidden_size, "input_layernorm", "post_attention_layernorm")]
