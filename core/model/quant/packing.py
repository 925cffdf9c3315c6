"""Quantize a float weight matrix into the stored format (format.py) and read it back.

Quantization is a fixed sequence of elementwise torch operations on float32 (subtractions and divisions by tensors,
round half to even, clamps) and exact reductions (min, max), so the same float weights give the same bytes on every
machine: servers and the local reference quantize the checkpoint independently and still agree.

Stored layout (what kernels.c reads): `packed` is uint8 [tiles * groups * block_bytes], one block per (tile of 8
outputs, group of 32 inputs) in order tile * groups + group; `scales` holds the bits of float16 numbers as int16
(so that `module.to(dtype)` / `module.float()`, which convert floating-point buffers, leave them alone):
[tiles, groups, 8] scales d for int8, [tiles, groups, 2, 8] scales d then minimums m for int4.
"""

from __future__ import annotations

import torch

from potluck.core.model.quant.format import GROUP_SIZE, TILE_OUTPUTS, Precision, padded_shape

FLOAT16_MAX = 65504.0
INT8_ORDER = [0, 2, 1, 3]  # stored order of each 4 inputs of an int8 block (its own inverse)


class QuantizationError(ValueError):
    """A weight that cannot be stored in the quantized format (not finite, or too large for float16 scales)."""


def _grouped(weight: torch.Tensor) -> torch.Tensor:
    """The weight as float32 [outputs, groups, 32], zero-padded to whole tiles and groups."""
    if weight.dim() != 2:
        raise QuantizationError(
            f"quantize one 2-D weight [out_features, in_features] at a time, not shape {tuple(weight.shape)}; "
            "for stacked expert weights [experts, out, in], quantize each expert's slice"
        )
    if not weight.is_floating_point():
        raise QuantizationError(f"weights must be floating point, not {weight.dtype}")
    if weight.device.type != "cpu":
        raise QuantizationError(f"quantized kernels run on the CPU; move the weight there first (it is on {weight.device})")
    out_features, in_features = weight.shape
    outputs, inputs = padded_shape(out_features, in_features)
    padded = torch.zeros(outputs, inputs, dtype=torch.float32)
    padded[:out_features, :in_features] = weight.detach()
    if not torch.isfinite(padded).all():
        raise QuantizationError("the weight holds inf or NaN: the checkpoint is damaged or was saved in too small a type")
    if padded.abs().max() > FLOAT16_MAX:
        raise QuantizationError(f"weights above {FLOAT16_MAX:g} in magnitude do not fit float16 scales")
    return padded.view(outputs, inputs // GROUP_SIZE, GROUP_SIZE)


def _divide(numerator: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """numerator / divisor, and 0 where the divisor is 0 (a group of equal weights)."""
    nonzero = divisor != 0
    ratio = numerator / torch.where(nonzero, divisor, torch.ones_like(divisor))
    return torch.where(nonzero, ratio, torch.zeros_like(ratio))


def quantize_levels(weight: torch.Tensor, precision: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer levels int8 [outputs, groups, 32] and float16 scales [outputs, groups, k] (padded; see format.py).

    int8: symmetric, d = max|w| / 127, levels in [-127, 127], k = 1.
    int4: asymmetric, d = (max - min) / 15 and m = min, levels in [0, 15], w ~ d * level + m, k = 2.
    """
    grouped = _grouped(weight)
    if precision is Precision.INT8:
        scale = (grouped.abs().amax(dim=-1, keepdim=True) / torch.tensor(127.0)).to(torch.float16)
        levels = torch.round(_divide(grouped, scale.to(torch.float32))).clamp_(-127, 127)
        return levels.to(torch.int8), scale
    if precision is Precision.INT4:
        low, high = grouped.amin(dim=-1, keepdim=True), grouped.amax(dim=-1, keepdim=True)
        scale = ((high - low) / torch.tensor(15.0)).to(torch.float16)
        minimum = low.to(torch.float16)
        levels = torch.round(_divide(grouped - minimum.to(torch.float32), scale.to(torch.float32))).clamp_(0, 15)
        return levels.to(torch.int8), torch.cat([scale, minimum], dim=-1)
    raise QuantizationError(f"{precision.value} is not a quantized precision")


def pack(levels: torch.Tensor, scales: torch.Tensor, precision: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    """Levels and scales from `quantize_levels` in the tiled layout of kernels.c: (packed uint8, scale bits int16)."""
    outputs, groups, _ = levels.shape
    tiles = outputs // TILE_OUTPUTS
    if precision is Precision.INT8:
        # [tile, o, group, u, k] -> [tile, group, u, o, k], inputs of each 4 in the order 0, 2, 1, 3 (kernels.c)
        blocks = levels.view(tiles, TILE_OUTPUTS, groups, 8, 4)[..., INT8_ORDER].permute(0, 2, 3, 1, 4)
        packed = blocks.contiguous().view(torch.uint8).reshape(-1)
    else:
        # element 8v + 4h + i of a group: [tile, o, group, v, h, i] -> [tile, group, v, o, i, h]
        nibbles = levels.view(torch.uint8).view(tiles, TILE_OUTPUTS, groups, 4, 2, 4).permute(0, 2, 3, 1, 5, 4)
        packed = (nibbles[..., 0] | (nibbles[..., 1] << 4)).contiguous().reshape(-1)
    per_group = precision.scales_per_group
    # [tile, o, group, k] -> [tile, group, k, o]
    tiled = scales.view(tiles, TILE_OUTPUTS, groups, per_group).permute(0, 2, 3, 1).contiguous()
    return packed, tiled.view(torch.int16).squeeze(2) if per_group == 1 else tiled.view(torch.int16)


def unpack(packed: torch.Tensor, tiled_scales: torch.Tensor, precision: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of `pack`: levels int8 [outputs, groups, 32] and float16 scales [outputs, groups, k]."""
    tiles, groups = tiled_scales.shape[:2]
    if precision is Precision.INT8:
        blocks = packed.view(torch.int8).view(tiles, groups, 8, TILE_OUTPUTS, 4)[..., INT8_ORDER].permute(0, 3, 1, 2, 4)
        levels = blocks.reshape(tiles * TILE_OUTPUTS, groups, GROUP_SIZE)
    else:
        bytes_ = packed.view(tiles, groups, 4, TILE_OUTPUTS, 4)
        nibbles = torch.stack((bytes_ & 0x0F, bytes_ >> 4), dim=-1)  # [tile, group, v, o, i, h]
        levels = nibbles.permute(0, 3, 1, 2, 5, 4).reshape(tiles * TILE_OUTPUTS, groups, GROUP_SIZE).view(torch.int8)
    per_group = precision.scales_per_group
    scales = tiled_scales.view(torch.float16).reshape(tiles, groups, per_group, TILE_OUTPUTS)
    return levels, scales.permute(0, 3, 1, 2).reshape(tiles * TILE_OUTPUTS, groups, per_group)


def dequantize(packed: torch.Tensor, tiled_scales: torch.Tensor, precision: Precision, out_features: int,
               in_features: int) -> torch.Tensor:
    """The float32 weight [out_features, in_features] the stored levels and scales stand for."""
    levels, scales = unpack(packed, tiled_scales, precision)
    scales = scales.to(torch.float32)
    weight = levels.to(torch.float32) * scales[..., :1]
    if precision is Precision.INT4:
        weight = weight + scales[..., 1:]
    return weight.reshape(levels.shape[0], -1)[:out_features, :in_features].contiguous()
