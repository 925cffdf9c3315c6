"""gpt-oss (20b, 120b): alternating sliding-window (128) and full attention with learned per-head attention sinks,
YaRN rotary, and a biased router over stacked, biased experts (clamped SwiGLU), `num_experts_per_tok` per token.

Attention is eager, as transformers itself runs it: its sdpa path has no sinks. The released checkpoints store the
expert matrices in MXFP4 (`*_blocks`: two 4-bit values per byte, `*_scales`: one power-of-two exponent per 32
values); they are expanded to the serving dtype on load.
"""

from __future__ import annotations

import torch

from potluck.core.model.families.base import strip_prefix
from potluck.core.model.families.decoder import DecoderFamily
from potluck.core.model.families.experts import GPT_OSS, quantize_layer_experts
from potluck.core.model.families.shapes import ROUTER, WeightShape, attention_weights, norm_weights, stacked_experts

# the 16 values of a 4-bit e2m1 float, by code (sign bit 3)
FP4_E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def mxfp4_to_float(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Expand MXFP4 experts: `blocks` [experts, rows, groups, 16] uint8 (low nibble first), `scales` [experts, rows,
    groups] uint8 biased exponents (value = code * 2 ** (scale - 127)) into [experts, groups * 32, rows] of `dtype`,
    the layout of GptOssExperts' `gate_up_proj` / `down_proj`. One expert at a time, to bound the working memory."""
    if blocks.shape[:-1] != scales.shape or blocks.shape[-1] != 16:
        raise ValueError(f"MXFP4 blocks {tuple(blocks.shape)} and scales {tuple(scales.shape)} do not match")
    table = torch.tensor(FP4_E2M1, dtype=torch.float32)
    experts, rows, groups, _ = blocks.shape
    out = torch.empty(experts, groups * 32, rows, dtype=dtype)
    for e in range(experts):
        packed = blocks[e].to(torch.uint8)
        codes = torch.stack([packed & 0x0F, packed >> 4], dim=-1).reshape(rows, groups, 32).long()
        exponents = scales[e].to(torch.int32) - 127
        values = torch.ldexp(table[codes], exponents.unsqueeze(-1).to(torch.float32))
        out[e] = values.reshape(rows, groups * 32).t().to(dtype)
    return out


class GptOssFamily(DecoderFamily):
    name = "gpt_oss"
    model_types = ("gpt_oss",)
    classes_by_type = {"gpt_oss": ("gpt_oss", "GptOss")}
    attention_implementation = "eager"  # GptOssPreTrainedModel has no sdpa support; sinks need the eager path
    experts_implementation = "grouped_mm"
    keep_float32 = ("layernorm", ".norm.")  # GptOssPreTrainedModel._keep_in_fp32_modules

    def block_state(self, tensors, prefix):
        state = strip_prefix(tensors, prefix)
        for name in ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"):
            if f"{name}_blocks" in state:
                state[name] = mxfp4_to_float(state.pop(f"{name}_blocks"), state.pop(f"{name}_scales"))
        return state

    def quantize_experts(self, layer, precision):
        return quantize_layer_experts(layer, precision, GPT_OSS)

    def block_weights(self, config, index):
        hidden, experts, bias = config.hidden_size, config.num_local_experts, bool(config.attention_bias)
        return [*attention_weights(config, qkv_bias=bias, o_bias=bias, sinks=True),
                WeightShape("mlp.router.weight", experts, hidden, ROUTER), WeightShape("mlp.router.bias", experts, 1, ROUTER),
                *stacked_experts(hidden, config.intermediate_size, experts, config.num_experts_per_tok, bias=True),
                *norm_weights(hidden, "input_layernorm", "post_attention_layernorm")]
