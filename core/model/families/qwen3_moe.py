"""Qwen3-MoE (e.g. Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3 attention, and a block's feed-forward is a router plus
`num_experts` stacked experts of which `num_experts_per_tok` run per token (dense in `mlp_only_layers`)."""

from __future__ import annotations

from potluck.core.model.families.base import merge_experts, strip_prefix
from potluck.core.model.families.decoder import DecoderFamily
from potluck.core.model.families.experts import CONCATENATED_GATED, quantize_layer_experts
from potluck.core.model.families.shapes import (
    ROUTER,
    WeightShape,
    attention_weights,
    gated_mlp_weights,
    norm_weights,
    stacked_experts,
)


def is_sparse(config, index: int) -> bool:
    """Whether block `index` has experts (the same rule as Qwen3MoeDecoderLayer)."""
    return (index not in (config.mlp_only_layers or [])) and config.num_experts > 0 and (index + 1) % config.decoder_sparse_step == 0


class Qwen3MoeFamily(DecoderFamily):
    name = "qwen3_moe"
    model_types = ("qwen3_moe",)
    classes_by_type = {"qwen3_moe": ("qwen3_moe", "Qwen3Moe")}
    experts_implementation = "grouped_mm"

    def block_state(self, tensors, prefix):
        # published checkpoints hold one tensor per expert and projection: stack them as the layer does
        return merge_experts(strip_prefix(tensors, prefix), source="mlp.experts.", gate="gate_proj", up="up_proj", down="down_proj")

    def quantize_experts(self, layer, precision):
        return quantize_layer_experts(layer, precision, CONCATENATED_GATED)

    def block_weights(self, config, index):
        bias, hidden = bool(config.attention_bias), config.hidden_size
        if is_sparse(config, index):
            mlp = [WeightShape("mlp.gate.weight", config.num_experts, hidden, ROUTER),
                   *stacked_experts(hidden, config.moe_intermediate_size, config.num_experts, config.num_experts_per_tok)]
        else:
            mlp = gated_mlp_weights(hidden, config.intermediate_size)
        return [*attention_weights(config, qkv_bias=bias, o_bias=bias, qk_norm=True), *mlp,
                *norm_weights(hidden, "input_layernorm", "post_attention_layernorm")]
