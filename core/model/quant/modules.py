"""nn.Module-level API: QuantizedLinear, quantize_linear, quantize_module.

`quantize_module(layer, precision)` replaces every nn.Linear inside a module (for example one decoder layer, right
after it is materialised) by a QuantizedLinear with the same forward contract, in place, and drops the module's
references to the float weights so that they are freed (unless something else still holds them). Parameters that
are not nn.Linear (norms, embeddings) are left as they are; stacked expert tensors are quantized by
core/model/families/experts.py (each family's `quantize_experts` hook, called by the loader).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from potluck.core.model.quant.format import Precision, parse_precision
from potluck.core.model.quant.weight import QuantizedWeight, matmul_stored


class QuantizedLinear(nn.Module):
    """A linear layer whose weight is stored at int8 or int4: x [..., in] -> [..., out], bias kept in float32.

    Inference only (no gradients), CPU only. `packed` and `scales` are buffers, so they are in the state dict.
    """

    def __init__(self, weight: QuantizedWeight, bias: torch.Tensor | None = None):
        super().__init__()
        weight.check()
        self.precision = weight.precision
        self.in_features, self.out_features = weight.in_features, weight.out_features
        self.register_buffer("packed", weight.packed)
        self.register_buffer("scales", weight.scales)
        if bias is not None:
            if bias.shape != (weight.out_features,):
                raise ValueError(f"bias of shape {tuple(bias.shape)} does not match {weight.out_features} outputs")
            bias = bias.detach().to(torch.float32).clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = matmul_stored(x, self.packed, self.scales, self.precision, self.in_features, self.out_features)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y

    @property
    def quantized_weight(self) -> QuantizedWeight:
        return QuantizedWeight(self.precision, self.out_features, self.in_features, self.packed, self.scales)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"precision={self.precision.value}, bias={self.bias is not None}")


def quantize_linear(linear: nn.Linear, precision: Precision | str) -> nn.Module:
    """A module computing what `linear` computes, with its weight at `precision` ("none" returns `linear` itself)."""
    precision = parse_precision(precision)
    if precision is Precision.NONE:
        return linear
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"quantize_linear takes an nn.Linear, not {type(linear).__name__}")
    weight = QuantizedWeight.from_float(linear.weight, precision)
    return QuantizedLinear(weight, linear.bias)


@dataclass(frozen=True)
class QuantizationReport:
    """What quantize_module did: parameter and buffer bytes of the module before and after, and how many layers."""

    precision: Precision
    bytes_before: int
    bytes_after: int
    linear_layers: int

    @property
    def ratio(self) -> float:
        return self.bytes_after / self.bytes_before if self.bytes_before else 1.0


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (each tensor counted once)."""
    seen: dict[int, int] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        seen[id(tensor)] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def quantize_module(module: nn.Module, precision: Precision | str) -> QuantizationReport:
    """Replace every nn.Linear inside `module` (not `module` itself) by its quantized version, in place.

    Returns the bytes before and after. With precision "none" nothing changes.
    """
    precision = parse_precision(precision)
    before = module_bytes(module)
    targets = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]
    if precision is not Precision.NONE:
        for parent, name, child in targets:
            setattr(parent, name, quantize_linear(child, precision))
    del targets
    return QuantizationReport(precision, before, module_bytes(module),
                              0 if precision is Precision.NONE else _count(module))


def _count(module: nn.Module) -> int:
    return sum(isinstance(m, QuantizedLinear) for m in module.modules())
