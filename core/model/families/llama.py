"""Llama 2/3, Mistral and Qwen2: rotary positions, RMSNorm, grouped-query attention, optional sliding windows."""

from __future__ import annotations

from potluck.core.model.families.decoder import DecoderFamily
from potluck.core.model.families.shapes import attention_weights, gated_mlp_weights, norm_weights


class LlamaFamily(DecoderFamily):
    name = "llama"
    model_types = ("llama", "mistral", "qwen2")
    classes_by_type = {"llama": ("llama", "Llama"), "mistral": ("mistral", "Mistral"), "qwen2": ("qwen2", "Qwen2")}

    def block_weights(self, config, index):
        if config.model_type == "llama":
            bias = bool(getattr(config, "attention_bias", False))
            attention = attention_weights(config, qkv_bias=bias, o_bias=bias)
        else:  # Mistral has no biases; Qwen2 has them on q, k and v only
            attention = attention_weights(config, qkv_bias=config.model_type == "qwen2", o_bias=False)
        mlp_bias = config.model_type == "llama" and bool(getattr(config, "mlp_bias", False))
        return [*attention, *gated_mlp_weights(config.hidden_size, config.intermediate_size, bias=mlp_bias),
                *norm_weights(config.hidden_size, "input_layernorm", "post_attention_layernorm")]
