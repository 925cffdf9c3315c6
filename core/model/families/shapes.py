"""What a block's weights are, as shapes: the basis of every byte figure (memory plans, per-token reads, quantization).

Pure functions over config numbers; no torch. Each family lists a block's tensors as `WeightShape`s with the exact
parameter names transformers uses, and the tests check them against the real transformers layer. A `WeightShape`
is `count` matrices of [out_features, in_features] (a vector has in_features == 1): for a mixture of experts the
stacked expert tensor is one `WeightShape` with count = number of experts, of which `active` (the router's top-k)
are read for each token. A precision applies per matrix: `weight_bytes(weights, matrix_bytes=...)` takes a function
of (out, in), e.g. `lambda out, inp: quantized_bytes(out, inp, "int8")`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from potluck.core.numbers import format_bytes

ATTENTION, MLP, EXPERTS, ROUTER, NORM = "attention", "mlp", "experts", "router", "norm"


@dataclass(frozen=True)
class WeightShape:
    name: str  # parameter name inside the block, as transformers spells it (e.g. "self_attn.q_proj.weight")
    out_features: int
    in_features: int  # 1 for a vector (norm weight, bias, attention sinks)
    kind: str  # ATTENTION, MLP, EXPERTS, ROUTER or NORM
    count: int = 1  # how many such matrices the tensor stacks (experts)
    active: int | None = None  # how many of them one token reads (top-k); None: all of them

    @property
    def is_matrix(self) -> bool:
        return self.in_features > 1

    @property
    def parameters(self) -> int:
        return self.out_features * self.in_features * self.count

    @property
    def active_parameters(self) -> int:
        return self.out_features * self.in_features * (self.count if self.active is None else self.active)


def head_dim(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def attention_weights(config, *, qkv_bias: bool, o_bias: bool, qk_norm: bool = False, sinks: bool = False) -> list[WeightShape]:
    """q/k/v/o projections of grouped-query attention, with optional biases, per-head q/k RMSNorms and sinks."""
    hidden, dim = config.hidden_size, head_dim(config)
    q_out, kv_out = config.num_attention_heads * dim, config.num_key_value_heads * dim
    weights = []
    for name, out, inp, bias in (("q_proj", q_out, hidden, qkv_bias), ("k_proj", kv_out, hidden, qkv_bias),
                                 ("v_proj", kv_out, hidden, qkv_bias), ("o_proj", hidden, q_out, o_bias)):
        weights.append(WeightShape(f"self_attn.{name}.weight", out, inp, ATTENTION))
        if bias:
            weights.append(WeightShape(f"self_attn.{name}.bias", out, 1, ATTENTION))
    if qk_norm:
        weights += [WeightShape("self_attn.q_norm.weight", dim, 1, NORM), WeightShape("self_attn.k_norm.weight", dim, 1, NORM)]
    if sinks:
        weights.append(WeightShape("self_attn.sinks", config.num_attention_heads, 1, ATTENTION))
    return weights


def gated_mlp_weights(hidden: int, intermediate: int, *, bias: bool = False, prefix: str = "mlp") -> list[WeightShape]:
    """gate/up/down projections of a SwiGLU/GeGLU feed-forward."""
    weights = []
    for name, out, inp in (("gate_proj", intermediate, hidden), ("up_proj", intermediate, hidden), ("down_proj", hidden, intermediate)):
        weights.append(WeightShape(f"{prefix}.{name}.weight", out, inp, MLP))
        if bias:
            weights.append(WeightShape(f"{prefix}.{name}.bias", out, 1, MLP))
    return weights


def norm_weights(hidden: int, *names: str) -> list[WeightShape]:
    return [WeightShape(f"{name}.weight", hidden, 1, NORM) for name in names]


def stacked_experts(hidden: int, intermediate: int, experts: int, top_k: int, *, bias: bool = False) -> list[WeightShape]:
    """Experts stored as two stacked tensors, `mlp.experts.gate_up_proj` and `mlp.experts.down_proj` (+ biases)."""
    weights = [WeightShape("mlp.experts.gate_up_proj", 2 * intermediate, hidden, EXPERTS, experts, top_k)]
    if bias:
        weights.append(WeightShape("mlp.experts.gate_up_proj_bias", 2 * intermediate, 1, EXPERTS, experts, top_k))
    weights.append(WeightShape("mlp.experts.down_proj", hidden, intermediate, EXPERTS, experts, top_k))
    if bias:
        weights.append(WeightShape("mlp.experts.down_proj_bias", hidden, 1, EXPERTS, experts, top_k))
    return weights


def total_parameters(weights: Iterable[WeightShape]) -> int:
    return sum(w.parameters for w in weights)


def active_parameters(weights: Iterable[WeightShape]) -> int:
    return sum(w.active_parameters for w in weights)


# what the loader quantizes: the blocks' nn.Linear layers and their stacked experts (routers, norms, biases stay float)
QUANTIZED_KINDS = frozenset({ATTENTION, MLP, EXPERTS})


def weight_bytes(weights: Iterable[WeightShape], element_bytes: int, *, active_only: bool = False,
                 matrix_bytes: Callable[[int, int], int] | None = None,
                 quantized_kinds: frozenset[str] = QUANTIZED_KINDS) -> int:
    """Bytes of `weights`: vectors at `element_bytes` each value, matrices too unless `matrix_bytes(out, in)` is given
    (a quantized precision, applied to matrices of `quantized_kinds`). `active_only` counts only the experts one
    token reads."""
    total = 0
    for w in weights:
        count = w.count if w.active is None or not active_only else w.active
        if w.is_matrix and matrix_bytes is not None and w.kind in quantized_kinds:
            total += matrix_bytes(w.out_features, w.in_features) * count
        else:
            total += w.out_features * w.in_features * count * element_bytes
    return total


def matrices(weights: Iterable[WeightShape]) -> list[tuple[int, int, int]]:
    """(out_features, in_features, count) of every matrix, experts included: what a precision is applied to."""
    return [(w.out_features, w.in_features, w.count) for w in weights if w.is_matrix]


def describe_block(weights: list[WeightShape], element_bytes: int) -> str:
    """One sentence for the dashboard: what a block holds and what one token reads of it."""
    held, read = weight_bytes(weights, element_bytes), weight_bytes(weights, element_bytes, active_only=True)
    experts = [w for w in weights if w.kind == EXPERTS]
    if not experts:
        return f"a block holds {format_bytes(held)} of weights, all of which every token reads"
    count, active = experts[0].count, experts[0].active or experts[0].count
    expert_bytes = weight_bytes(experts, element_bytes) / count
    return (f"a block holds {count} experts of which {active} run per token: {format_bytes(held)} in memory "
            f"({format_bytes(expert_bytes)} per expert), {format_bytes(read)} read per token "
            f"({math.ceil(100 * read / held)}% of it)")
