"""QuantizedWeight (one stored weight matrix), qmatmul (x times it), and the choice of kernel.

Kernels, all returning the same bits (see format.py), fastest first:
- "avx512vnni", "avxvnni": kernels.c with vpdpbusd / vpdpwssd (AVX512-VNNI with VL: Intel Ice Lake and later,
  AMD Zen 4; AVX-VNNI: Intel 12th gen / N100 and later, AMD Zen 5);
- "avx2": kernels.c's AVX2 path; needs an x86-64 CPU with AVX2, FMA and F16C (Intel Haswell, AMD Zen 1 and later);
- "portable": kernels.c in plain C (any CPU the library was built for; slow);
- "torch": reference.py, pure torch (always there; slowest).
All of them need the built library except "torch".

The kernel is chosen at every call: the `kernel` argument, else the environment variable POTLUCK_QUANT_KERNEL
("auto" when unset), else the fastest one available. Asking for a kernel that cannot run here raises
KernelUnavailableError; "auto" never does. The native kernels use torch's thread count and OpenMP runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from potluck.core.model.quant import native
from potluck.core.model.quant.format import (
    FORMAT_TAG,
    GROUP_SIZE,
    TILE_OUTPUTS,
    Precision,
    parse_precision,
    quantized_bytes,
)
from potluck.core.model.quant.packing import dequantize, pack, quantize_levels
from potluck.core.model.quant.reference import reference_matmul

KERNEL_ENV = "POTLUCK_QUANT_KERNEL"
KERNELS = (*native.ISAS, "torch")
BITS = {Precision.INT8: 8, Precision.INT4: 4}


class KernelUnavailableError(RuntimeError):
    """The kernel asked for cannot run on this machine or install."""


@dataclass(eq=False)
class QuantizedWeight:
    """A [out_features, in_features] weight stored at int8 or int4 (layout: packing.py)."""

    precision: Precision
    out_features: int
    in_features: int
    packed: torch.Tensor  # uint8, tiled blocks
    scales: torch.Tensor  # float16 bits as int16: [tiles, groups, 8] (int8), [tiles, groups, 2, 8] (int4)

    @classmethod
    def from_float(cls, weight: torch.Tensor, precision: Precision | str,
                   rows_per_chunk: int = 4096) -> "QuantizedWeight":
        """Quantize a 2-D float weight (any float dtype, on the CPU); the same weight always gives the same bytes.

        For stacked weights such as transformers' mixture-of-experts `gate_up_proj [experts, 2 * intermediate,
        hidden]` (used as `F.linear(x, gate_up_proj[e])`), quantize each expert's slice `w[e]`; a layer that stores
        [experts, in, out] and multiplies `x @ w[e]` needs `w[e].T`. `rows_per_chunk` (a multiple of 8) bounds the
        float32 temporaries; it does not change the bytes.
        """
        if rows_per_chunk <= 0 or rows_per_chunk % TILE_OUTPUTS:
            raise ValueError(f"rows_per_chunk must be a positive multiple of {TILE_OUTPUTS}, not {rows_per_chunk}")
        precision = parse_precision(precision)
        if precision is Precision.NONE:
            raise ValueError("precision 'none' keeps the float weight: there is nothing to quantize")
        if weight.dim() != 2 or weight.numel() == 0:
            quantize_levels(weight, precision)  # raises the explanation
        # A few thousand rows at a time: the float32 temporaries stay small even for a 70B model's largest matrix,
        # and whole tiles concatenate into the same bytes as one pass.
        parts = [pack(*quantize_levels(weight[start : start + rows_per_chunk], precision), precision)
                 for start in range(0, weight.shape[0], rows_per_chunk)]
        packed = torch.cat([p for p, _ in parts]) if len(parts) > 1 else parts[0][0]
        tiled_scales = torch.cat([s for _, s in parts]) if len(parts) > 1 else parts[0][1]
        return cls(precision, int(weight.shape[0]), int(weight.shape[1]), packed, tiled_scales)

    @property
    def nbytes(self) -> int:
        return self.packed.numel() * self.packed.element_size() + self.scales.numel() * self.scales.element_size()

    @property
    def format_tag(self) -> str:
        return FORMAT_TAG[self.precision]

    def dequantize(self) -> torch.Tensor:
        """The float32 weight these bytes stand for (for inspection and tests; the kernels never build it)."""
        return dequantize(self.packed, self.scales, self.precision, self.out_features, self.in_features)

    def check(self) -> None:
        """Raise ValueError when the tensors do not have the sizes the format needs (e.g. a damaged state dict)."""
        expected = quantized_bytes(self.out_features, self.in_features, self.precision)
        if (self.packed.dtype != torch.uint8 or self.scales.dtype != torch.int16 or self.nbytes != expected
                or not self.packed.is_contiguous() or not self.scales.is_contiguous()):
            raise ValueError(f"stored {self.precision.value} weight {self.out_features}x{self.in_features} is damaged: "
                             f"{self.nbytes} bytes of {self.packed.dtype}/{self.scales.dtype}, expected {expected}")


def available_kernels() -> list[str]:
    """The kernels that can run here, fastest first."""
    lib = native.library()
    return [*(lib.kernels if lib is not None else ()), "torch"]


def select_kernel(kernel: str | None = None) -> str:
    """The kernel a call uses: `kernel`, else $POTLUCK_QUANT_KERNEL, else "auto" (the fastest available)."""
    wanted = (kernel or os.environ.get(KERNEL_ENV) or "auto").strip().lower()
    if wanted not in KERNELS + ("auto",):
        raise KernelUnavailableError(f"unknown quantized kernel {wanted!r} (from {'argument' if kernel else KERNEL_ENV}); "
                                     f"choose auto, {', '.join(KERNELS)}")
    available = available_kernels()
    if wanted == "auto":
        return available[0]
    if wanted not in available:
        reason = native.load_error() or f"this CPU lacks one of {', '.join(native.ISAS[wanted][1])}"
        raise KernelUnavailableError(f"quantized kernel {wanted!r} cannot run here: {reason}")
    return wanted


def qmatmul(x: torch.Tensor, weight: QuantizedWeight, *, kernel: str | None = None) -> torch.Tensor:
    """x [..., in_features] @ weight^T -> [..., out_features], in x's dtype (computed in float32, no autograd).

    Row-independent and deterministic: each row's result is the same bits whatever else is in the call, whichever
    kernel runs, on any number of threads. Inputs must be finite for that promise (inf/NaN give unspecified values).
    """
    return matmul_stored(x, weight.packed, weight.scales, weight.precision, weight.in_features, weight.out_features,
                         kernel)


def matmul_stored(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, precision: Precision,
                  in_features: int, out_features: int, kernel: str | None = None) -> torch.Tensor:
    """qmatmul on the stored tensors themselves (QuantizedLinear's forward; kept short: decode calls it a lot)."""
    if x.shape[-1] != in_features:
        raise ValueError(f"input has {x.shape[-1]} features, the weight expects {in_features}")
    if not (x.is_cpu and packed.is_cpu and scales.is_cpu):
        raise ValueError(f"quantized weights run on the CPU; input on {x.device}, weight on {packed.device}")
    lib = native.library()
    if kernel is None and lib is not None and not os.environ.get(KERNEL_ENV):
        isa = lib.best_isa
    else:
        chosen = select_kernel(kernel)
        if chosen == "torch":
            rows = x.detach().reshape(-1, in_features).to(torch.float32).contiguous()
            y = reference_matmul(rows, packed, scales, precision, out_features)
            return y.view(*x.shape[:-1], out_features).to(x.dtype)
        isa = native.ISAS[chosen][0]
    source = x if x.dtype is torch.float32 and x.is_contiguous() else x.to(torch.float32).contiguous()
    rows = source.numel() // in_features
    y = torch.empty(rows, out_features, dtype=torch.float32)
    native.linear(lib, isa, source.data_ptr(), rows, in_features, packed.data_ptr(), scales.data_ptr(), out_features,
                  BITS[precision], y.data_ptr(), torch.get_num_threads())
    if x.dim() != 2:
        y = y.view(*x.shape[:-1], out_features)
    return y if x.dtype is torch.float32 else y.to(x.dtype)


def kernel_info() -> dict:
    """Which kernel "auto" picks here, what it needs, and why a faster one is missing (for logs and announcements)."""
    lib = native.library()
    return {
        "kernel": available_kernels()[0],
        "available": available_kernels(),
        "forced": os.environ.get(KERNEL_ENV) or None,
        "library": str(lib.path) if lib else None,
        "load_error": native.load_error(),
        "cpu_features": sorted(lib.features) if lib else [],
        "needs": {name: list(needs) for name, (_, needs) in native.ISAS.items()},
        "threads": torch.get_num_threads(),
        "group_size": GROUP_SIZE,
        "formats": {p.value: tag for p, tag in FORMAT_TAG.items() if p is not Precision.NONE},
        "same_bits_on_every_kernel": True,
    }
