"""Precisions and the storage format of quantized weights, as plain data and arithmetic (no torch).

`int8` and `int4` store each weight matrix in groups of `GROUP_SIZE` inputs per output:

- int8 (symmetric): levels q in [-127, 127], w ~ d * q, with d = max|w| / 127 (float16) per group;
- int4 (asymmetric): levels q in [0, 15], w ~ d * q + m, with d = (max - min) / 15 and m = min (float16 each) per
  group. A GGUF Q4_1 checkpoint (same grid) comes back exactly; on bf16 weights asymmetric beats symmetric.

At run time every input row is quantized per group of 32 (scale max|x| / L): to 16 bits (L = 32767) for int8
weights, so that int8 stays close to lossless, and to 8 bits (L = 127) for int4 weights, whose own rounding
dwarfs that of the activations. Each group's integer dot product is exact, and the float32 sum over groups runs in
one fixed order without fused multiply-add (kernels.c has the exact contract). So every kernel (AVX2, AVX-VNNI,
AVX512-VNNI, portable C, pure torch) returns the same bits, a row's result never depends on the other rows of a
call, and the thread count changes nothing: `FORMAT_TAG` names all of that, and two processes with the same tag and
the same float weights agree bit for bit. Each output also depends only on its own weight row, so weights
concatenated along the outputs (q/k/v, gate/up) give the same bits as separate ones.

Outputs are stored in tiles of `TILE_OUTPUTS` and inputs in whole groups; padding counts in the bytes.
"""

from __future__ import annotations

from enum import Enum

GROUP_SIZE = 32  # inputs per scale, for weights and for activations
TILE_OUTPUTS = 8  # outputs stored together (one AVX2 register of results)
SCALE_BYTES = 2  # float16
FLOAT32_BYTES = 4
FORMAT_VERSION = 1


class PrecisionError(ValueError):
    """A precision name Potluck does not know."""


class Precision(str, Enum):
    """How a block server stores its linear-layer weights."""

    NONE = "none"  # float weights as loaded (no quantization)
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bits(self) -> int | None:
        return {Precision.INT8: 8, Precision.INT4: 4}.get(self)

    @property
    def scales_per_group(self) -> int:
        """float16 numbers stored per output and group: d (int8), d and m (int4)."""
        return {Precision.INT8: 1, Precision.INT4: 2}.get(self, 0)


FORMAT_TAG = {
    Precision.NONE: "none",
    Precision.INT8: f"int8-sym-g{GROUP_SIZE}-a16g{GROUP_SIZE}-v{FORMAT_VERSION}",
    Precision.INT4: f"int4-asym-g{GROUP_SIZE}-a8g{GROUP_SIZE}-v{FORMAT_VERSION}",
}


def parse_precision(text: str | Precision) -> Precision:
    """`"none"`, `"int8"` or `"int4"` (any case, surrounding spaces ignored) as a Precision; anything else is refused."""
    if isinstance(text, Precision):
        return text
    if not isinstance(text, str):
        raise PrecisionError(f"precision must be a string such as 'int8', not {type(text).__name__}")
    key = text.strip().lower()
    for precision in Precision:
        if key == precision.value:
            return precision
    choices = ", ".join(p.value for p in Precision)
    raise PrecisionError(f"unknown precision {text!r}; choose one of {choices} (none keeps the float weights)")


def padded_shape(out_features: int, in_features: int) -> tuple[int, int]:
    """(outputs, inputs) as stored: outputs rounded up to whole tiles, inputs to whole groups."""
    if out_features <= 0 or in_features <= 0:
        raise ValueError(f"a weight needs positive sizes, got {out_features} x {in_features}")
    tiles = -(-out_features // TILE_OUTPUTS)
    groups = -(-in_features // GROUP_SIZE)
    return tiles * TILE_OUTPUTS, groups * GROUP_SIZE


def quantized_bytes(out_features: int, in_features: int, precision: Precision | str) -> int:
    """Bytes one [out_features, in_features] weight takes at `precision`, scales and padding included.

    Pure arithmetic, for sizing a model before loading it. `none` counts float32 (4 bytes a weight); a bias, kept in
    float32 at every precision, is not included.
    """
    precision = parse_precision(precision)
    if precision is Precision.NONE:
        padded_shape(out_features, in_features)  # the same size check
        return out_features * in_features * FLOAT32_BYTES
    outputs, inputs = padded_shape(out_features, in_features)
    weight_bytes = outputs * inputs * precision.bits // 8
    scale_bytes = outputs * (inputs // GROUP_SIZE) * precision.scales_per_group * SCALE_BYTES
    return weight_bytes + scale_bytes
