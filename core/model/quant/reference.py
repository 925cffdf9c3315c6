"""The pure-torch kernel: the same arithmetic as kernels.c, step for step, so that its results are the same bits.

Used when the native library cannot load (no compiler at install time, an unknown platform) and as the reference
the tests hold the native kernels to. It is correct rather than fast: it unpacks the weights on every call.

Why the bits agree (the contract is in kernels.c):
- activations are quantized with the same float32 operations (true division by tensors, never `scalar / tensor`,
  which torch computes as a reciprocal times the scalar), round half to even, and the same clamp;
- a group's integer dot product is computed exactly: in float64 (int8 weights x 16-bit activations reach 1.3e8),
  or in float32 for int4 x 8-bit (below 2**24, so exact in any order) unless float32 matmuls may use reduced
  precision; it is then rounded once to float32, as the C code's (float)isum is;
- the float32 sum over groups is a Python loop with the same rounded products and sums per group, in order.
"""

from __future__ import annotations

import torch

from potluck.core.model.quant.format import GROUP_SIZE, Precision
from potluck.core.model.quant.packing import unpack

GROUPS_PER_CHUNK = 16  # bounds the [groups, rows, outputs] intermediate
ACTIVATION_LEVELS = {Precision.INT8: 32767, Precision.INT4: 127}  # 16-bit activations for int8 weights, 8-bit for int4


def quantize_activations(x: torch.Tensor, groups: int, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer levels (float, [rows, groups, 32]) and float32 scales [rows, groups] of float32 rows x [rows, in]."""
    rows, in_features = x.shape
    padded = torch.zeros(rows, groups * GROUP_SIZE, dtype=torch.float32)
    padded[:, :in_features] = x
    grouped = padded.view(rows, groups, GROUP_SIZE)
    amax = grouped.abs().amax(dim=-1)
    top = torch.tensor(float(levels))
    scale = amax / top
    positive = amax > 0
    inverse = torch.where(positive, top / torch.where(positive, amax, torch.ones_like(amax)), torch.zeros_like(amax))
    values = grouped * inverse.unsqueeze(-1)
    values = torch.nan_to_num(values, nan=-float(levels)).clamp_(-float(levels), float(levels))
    return torch.round(values), scale


def reference_matmul(x: torch.Tensor, packed: torch.Tensor, tiled_scales: torch.Tensor, precision: Precision,
                     out_features: int) -> torch.Tensor:
    """y [rows, out_features] = x [rows, in] (float32, contiguous) times the stored weight, transposed."""
    levels, scales = unpack(packed, tiled_scales, precision)
    groups = levels.shape[1]
    xq, xs = quantize_activations(x, groups, ACTIVATION_LEVELS[precision])
    xsum = xq.sum(dim=-1)  # exact: integers below 2**24
    exact = precision is Precision.INT4 and torch.get_float32_matmul_precision() == "highest"
    exact_dtype = torch.float32 if exact else torch.float64
    scales = scales[:out_features].to(torch.float32)
    y = torch.zeros(x.shape[0], out_features, dtype=torch.float32)
    for start in range(0, groups, GROUPS_PER_CHUNK):
        stop = min(start + GROUPS_PER_CHUNK, groups)
        w = levels[:out_features, start:stop].to(exact_dtype).permute(1, 2, 0)  # [g, 32, out]
        a = xq[:, start:stop].to(exact_dtype).permute(1, 0, 2)  # [g, rows, 32]
        sums = torch.bmm(a, w).to(torch.float32)  # exact integers, rounded once to float32 like (float)isum
        for g in range(start, stop):
            contribution = sums[g - start] * (xs[:, g : g + 1] * scales[:, g, 0].unsqueeze(0))
            if precision is Precision.INT4:
                contribution = contribution + xsum[:, g : g + 1] * (xs[:, g : g + 1] * scales[:, g, 1].unsqueeze(0))
            y = y + contribution
    return y
