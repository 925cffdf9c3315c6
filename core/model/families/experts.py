"""Mixture-of-experts weights at int8 / int4: `QuantizedExperts` replaces a transformers expert module in place.

transformers 5 keeps a MoE layer's experts as two stacked tensors, `gate_up_proj` and `down_proj` (plus biases for
gpt-oss), inside one module called as `experts(hidden [tokens, hidden], top_k_index [tokens, k], top_k_weights
[tokens, k]) -> [tokens, hidden]`. `QuantizedExperts` keeps the same call and computes the same function, with each
expert's two matrices stored as `QuantizedWeight`s (core/model/quant) and biases in float32:

    for each slot (token t, j-th choice e = top_k_index[t, j]):
        y = gate_up_e(x_t) (+ gate_up_bias_e);  h = activation(y);  z = down_e(h) (+ down_bias_e)
        slot[t, j] = z * top_k_weights[t, j]
    out[t] = slot[t, 0] + slot[t, 1] + ... + slot[t, k - 1]     (in that order, as transformers' grouped_mm sums)

looping over the experts that received tokens (gathering their rows, one qmatmul per matrix). Every step is a
gather, qmatmul (row-independent: a row's bits never depend on the other rows of the call) or elementwise, so a
token's output depends only on its own hidden row and its own routing, not on which other tokens share the call
(tested: a token alone, inside a 17-token chunk, among other tokens, on 1 or 2 threads). One limit, shared with every
elementwise torch op and so with the dense quantized MLPs: torch computes the last few elements of a contiguous run
(< 16 floats) and the elements at a thread split (calls over 32768 elements) on a scalar path whose sigmoid/exp may
round differently, so the promise needs intermediate sizes that are multiples of 16 (every published MoE's are) and
holds exactly for calls under 32768 elements per activation. The router's float32 F.linear in front of the experts
is not row-independent at all (MKL picks kernels by row count), so a whole MoE block is not either.

How each family lays out its experts is an `ExpertLayout` (`CONCATENATED_GATED` for Qwen3-MoE and Mixtral,
`GPT_OSS` for gpt-oss); a family's `quantize_experts(layer, precision)` hook calls `quantize_layer_experts` with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from potluck.core.model.quant.format import Precision, parse_precision
from potluck.core.model.quant.weight import QuantizedWeight, matmul_stored

GATED, CLAMPED_SWIGLU = "gated", "clamped_swiglu"


class ExpertRoutingError(ValueError):
    """The routing passed to an expert module does not fit it (shapes, or an expert index out of range)."""


@dataclass(frozen=True)
class ExpertLayout:
    """How a transformers expert module stores its stacked matrices and what it computes between them."""

    transposed: bool  # [experts, in, out] used as x @ w[e] (gpt-oss); else [experts, out, in] used as F.linear(x, w[e])
    interleaved: bool  # gate_up's outputs alternate gate, up, gate, up (gpt-oss); else [gate; up]
    bias: bool  # gate_up_proj_bias [experts, 2 * inter] and down_proj_bias [experts, hidden]
    activation: str  # GATED: act_fn(gate) * up (the module's own act_fn); CLAMPED_SWIGLU: gpt-oss's (alpha, limit)


# Qwen3-MoE, Mixtral
CONCATENATED_GATED = ExpertLayout(transposed=False, interleaved=False, bias=False, activation=GATED)
# gpt-oss
GPT_OSS = ExpertLayout(transposed=True, interleaved=True, bias=True, activation=CLAMPED_SWIGLU)


class GatedActivation(nn.Module):
    """act_fn(gate) * up over [..., 2 * inter] = [gate | up] (transformers' `_default_apply_gate`)."""

    def __init__(self, act_fn: nn.Module):
        super().__init__()
        self.act_fn = act_fn

    def forward(self, gate_up: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        return self.act_fn(gate) * up


class ClampedSwiGLU(nn.Module):
    """gpt-oss's gate over [..., 2 * inter] = [gate | up] (de-interleaved): gate clamped above at `limit`, up to
    [-limit, limit], (up + 1) * gate * sigmoid(alpha * gate) (GptOssExperts._apply_gate)."""

    def __init__(self, alpha: float, limit: float):
        super().__init__()
        self.alpha, self.limit = float(alpha), float(limit)

    def forward(self, gate_up: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        gate = gate.clamp(min=None, max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        return (up + 1) * (gate * torch.sigmoid(gate * self.alpha))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, limit={self.limit}"


class StackedWeights:
    """Quantized [out, in] weights of `count` experts filled one at a time into two [count, ...] tensors (packed
    bytes, scales), so that quantizing a layer's experts never holds a second copy of them."""

    def __init__(self, count: int):
        self.count, self.filled = count, 0
        self.packed = self.scales = None
        self.shape: tuple | None = None  # (precision, out_features, in_features)

    def add(self, weight: QuantizedWeight) -> None:
        weight.check()
        shape = (weight.precision, weight.out_features, weight.in_features)
        if self.shape is None:
            self.shape = shape
            self.packed = torch.empty(self.count, *weight.packed.shape, dtype=weight.packed.dtype)
            self.scales = torch.empty(self.count, *weight.scales.shape, dtype=weight.scales.dtype)
        if shape != self.shape or self.filled >= self.count:
            raise ValueError(f"expert {self.filled}: a {shape[0].value} {shape[1:]} weight does not continue "
                             f"{self.count} {self.shape[0].value} {self.shape[1:]} weights")
        self.packed[self.filled].copy_(weight.packed)
        self.scales[self.filled].copy_(weight.scales)
        self.filled += 1


class QuantizedExperts(nn.Module):
    """A transformers expert module's function with int8/int4 expert matrices (see the module docstring).

    Inference only, CPU only, float32 compute (inputs of another dtype are converted, the output comes back in it).
    Buffers: `gate_up_packed`/`gate_up_scales` ([experts, ...], each expert a [2 * inter, hidden] weight with outputs
    [gate | up]), `down_packed`/`down_scales` (each [hidden, inter]), and optional float32 biases [experts, out].
    """

    def __init__(self, gate_up: StackedWeights, down: StackedWeights, activation: nn.Module,
                 gate_up_bias: torch.Tensor | None = None, down_bias: torch.Tensor | None = None):
        super().__init__()
        if not gate_up.filled or gate_up.filled != gate_up.count or down.filled != gate_up.count:
            raise ValueError(f"need one gate_up and one down weight for each of {gate_up.count} experts, got "
                             f"{gate_up.filled} and {down.filled}")
        self.precision, inter2, self.hidden_dim = gate_up.shape
        self.num_experts, self.intermediate_dim = gate_up.count, inter2 // 2
        if inter2 % 2 or down.shape != (self.precision, self.hidden_dim, self.intermediate_dim):
            raise ValueError(f"gate_up {gate_up.shape[1:]} and down {down.shape[1:]} (out, in) are not a gated "
                             f"expert's [2 * inter, hidden] and [hidden, inter] at one precision")
        biases = (("gate_up_bias", gate_up_bias, inter2), ("down_bias", down_bias, self.hidden_dim))
        for name, bias, size in biases:
            if bias is not None and tuple(bias.shape) != (self.num_experts, size):
                raise ValueError(f"{name} of shape {tuple(bias.shape)} does not match {self.num_experts} experts "
                                 f"x {size}")
            self.register_buffer(name, None if bias is None else bias.detach().to(torch.float32).clone())
        self.activation = activation
        self.register_buffer("gate_up_packed", gate_up.packed)
        self.register_buffer("gate_up_scales", gate_up.scales)
        self.register_buffer("down_packed", down.packed)
        self.register_buffer("down_scales", down.scales)

    def expert_weights(self, expert: int) -> tuple[QuantizedWeight, QuantizedWeight]:
        """Expert `expert`'s (gate_up, down) as QuantizedWeights (views of the buffers; for inspection and tests)."""
        inter, hidden, precision = self.intermediate_dim, self.hidden_dim, self.precision
        return (QuantizedWeight(precision, 2 * inter, hidden, self.gate_up_packed[expert], self.gate_up_scales[expert]),
                QuantizedWeight(precision, hidden, inter, self.down_packed[expert], self.down_scales[expert]))

    def check_routing(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                      top_k_weights: torch.Tensor) -> None:
        """Raise ExpertRoutingError unless hidden is [tokens, hidden] and the routing [tokens, k >= 1] in range."""
        shapes = tuple(hidden_states.shape), tuple(top_k_index.shape), tuple(top_k_weights.shape)
        if (len(shapes[0]) != 2 or shapes[0][1] != self.hidden_dim or len(shapes[1]) != 2 or shapes[1][1] < 1
                or shapes[1][0] != shapes[0][0] or shapes[2] != shapes[1]):
            raise ExpertRoutingError(f"experts take hidden [tokens, {self.hidden_dim}], top_k_index and top_k_weights "
                                     f"[tokens, k]; got {', '.join(str(s) for s in shapes)}")
        if top_k_index.numel():
            lowest, highest = (int(v) for v in torch.aminmax(top_k_index))
            if lowest < 0 or highest >= self.num_experts:
                raise ExpertRoutingError(f"expert index out of range 0..{self.num_experts - 1}: {lowest}..{highest}")

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        self.check_routing(hidden_states, top_k_index, top_k_weights)
        (tokens, hidden), top_k = hidden_states.shape, top_k_index.shape[1]
        inter2 = 2 * self.intermediate_dim
        flat = top_k_index.reshape(-1)
        order = torch.argsort(flat, stable=True)  # slots grouped by expert, in slot order within each expert
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        rows = hidden_states.detach().to(torch.float32).index_select(0, order // top_k)  # each slot's token row
        weights = top_k_weights.detach().reshape(-1).index_select(0, order).to(torch.float32).unsqueeze(1)
        grouped = torch.empty(tokens * top_k, hidden, dtype=torch.float32)  # results in `order`
        start = 0
        for expert, count in enumerate(counts):
            if not count:
                continue
            end = start + count
            gate_up = matmul_stored(rows[start:end], self.gate_up_packed[expert], self.gate_up_scales[expert],
                                    self.precision, hidden, inter2)
            if self.gate_up_bias is not None:
                gate_up = gate_up + self.gate_up_bias[expert]
            out = matmul_stored(self.activation(gate_up), self.down_packed[expert], self.down_scales[expert],
                                self.precision, inter2 // 2, hidden)
            if self.down_bias is not None:
                out = out + self.down_bias[expert]
            torch.mul(out, weights[start:end], out=grouped[start:end])
            start = end
        slots = torch.empty_like(grouped).index_copy_(0, order, grouped)  # back to (token, choice) order
        slots = slots.view(tokens, top_k, hidden)
        result = slots[:, 0]
        for j in range(1, top_k):  # elementwise, in slot order: each token's sum is computed alone
            result = result + slots[:, j]
        return result.to(hidden_states.dtype)

    def extra_repr(self) -> str:
        return (f"experts={self.num_experts}, hidden={self.hidden_dim}, intermediate={self.intermediate_dim}, "
                f"precision={self.precision.value}, bias={self.gate_up_bias is not None}")


def _activation(experts: nn.Module, layout: ExpertLayout) -> nn.Module:
    if layout.activation == GATED:
        return GatedActivation(experts.act_fn)
    if layout.activation == CLAMPED_SWIGLU:
        return ClampedSwiGLU(experts.alpha, experts.limit)
    raise ValueError(f"unknown expert activation {layout.activation!r}")


def quantize_expert_module(experts: nn.Module, precision: Precision | str, layout: ExpertLayout) -> QuantizedExperts:
    """A QuantizedExperts computing what `experts` (a transformers expert module laid out as `layout`) computes.

    One expert at a time: the float temporaries stay one expert's size. `experts` itself is not changed."""
    precision = parse_precision(precision)
    if precision is Precision.NONE:
        raise ValueError("precision 'none' keeps the float experts: there is nothing to quantize")
    stacked_gate_up, stacked_down = experts.gate_up_proj.detach(), experts.down_proj.detach()
    count = stacked_gate_up.shape[0]
    gate_up, down = StackedWeights(count), StackedWeights(count)
    for e in range(count):
        weight = stacked_gate_up[e].t() if layout.transposed else stacked_gate_up[e]  # [2 * inter, hidden]
        if layout.interleaved:  # gate, up, gate, up, ... -> [gate | up] (a reordering of whole output rows)
            weight = torch.cat([weight[0::2], weight[1::2]])
        gate_up.add(QuantizedWeight.from_float(weight, precision))
        weight = stacked_down[e].t() if layout.transposed else stacked_down[e]  # [hidden, inter]
        down.add(QuantizedWeight.from_float(weight, precision))
    gate_up_bias = down_bias = None
    if layout.bias:
        gate_up_bias, down_bias = experts.gate_up_proj_bias.detach(), experts.down_proj_bias.detach()
        if layout.interleaved:
            gate_up_bias = torch.cat([gate_up_bias[:, 0::2], gate_up_bias[:, 1::2]], dim=1)
    return QuantizedExperts(gate_up, down, _activation(experts, layout), gate_up_bias, down_bias)


def quantize_layer_experts(layer: nn.Module, precision: Precision | str, layout: ExpertLayout,
                           path: str = "mlp.experts") -> int:
    """Replace the expert module at `path` inside a decoder layer (if the layer has one: Qwen3-MoE's dense layers do
    not) by its quantized version, in place; returns how many were replaced (0 or 1). The layer drops its
    reference to the float experts, so they are freed unless the caller still holds them."""
    precision = parse_precision(precision)
    parent_path, _, name = path.rpartition(".")
    parent = layer.get_submodule(parent_path) if parent_path else layer
    experts = getattr(parent, name, None)
    if precision is Precision.NONE or experts is None or isinstance(experts, QuantizedExperts):
        return 0
    if not hasattr(experts, "gate_up_proj"):
        raise ValueError(f"{type(experts).__name__} at {path!r} is not a stacked expert module (no gate_up_proj)")
    setattr(parent, name, quantize_expert_module(experts, precision, layout))
    return 1
