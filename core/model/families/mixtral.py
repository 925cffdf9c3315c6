"""Mixtral: Mistral attention (optionally a sliding window on every layer), and a sparse feed-forward of
`num_local_experts` stacked experts, `num_experts_per_tok` per token."""

from __future__ import annotations

from potluck.core.model.families.base import merge_experts, strip_prefix
from potluck.core.model.families.decoder import DecoderFamily
from potluck.core.model.families.experts import CONCATENATED_GATED, quantize_layer_experts
from potluck.core.model.families.shapes import ROUTER, WeightShape, attention_weights, norm_weights, stacked_experts


class MixtralFamily(DecoderFamily):
    name = "mixtral"
    model_types = ("mixtral",)
    classes_by_type = {"mixtral": ("mixtral", "Mixtral")}
    experts_implementation = "grouped_mm"

    def block_state(self, tensors, prefix):
        # published checkpoints name the sparse block `block_sparse_moe` and each expert's w1 (gate), w3 (up), w2 (down)
        state = {name.replace("block_sparse_moe.", "mlp.", 1): t for name, t in strip_prefix(tensors, prefix).items()}
        return merge_experts(state, source="mlp.experts.", gate="w1", up="w3", down="w2")

    def quantize_experts(self, layer, precision):
        return quantize_layer_experts(layer, precision, CONCATENATED_GATED)

    def block_weights(self, config, index):
        hidden, experts = config.hidden_size, config.num_local_experts
        return [*attention_weights(config, qkv_bias=False, o_bias=False),
                WeightShape("mlp.gate.weight", experts, hidden, ROUTER),
                *stacked_experts(hidden, config.intermediate_size, experts, config.num_experts_per_tok),
                *norm_weights(hidden, "input_layernorm", "post_attention_layernorm")]
