"""Quantized weights (potluck.core.model.quant): format, sizes, accuracy, and exactness (rows, kernels, threads,
processes). Modules, fallback and a real decoder layer: test_quant_layers.py."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from potluck.core.model.quant.format import Precision, PrecisionError, parse_precision, quantized_bytes
from potluck.core.model.quant.packing import QuantizationError
from potluck.core.model.quant.weight import QuantizedWeight, available_kernels, qmatmul

ROOT = Path(__file__).resolve().parents[2]
QUANTIZED = [Precision.INT8, Precision.INT4]
# odd shapes on purpose: a partial tile of outputs and a partial group of inputs
SHAPES = [(8, 32), (13, 70), (40, 96), (257, 130)]


def weight_and_input(out_features, in_features, rows, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(out_features, in_features, generator=g) * 0.05,
            torch.randn(rows, in_features, generator=g))


@pytest.mark.parametrize("text, expected", [
    ("none", Precision.NONE), ("int8", Precision.INT8), ("int4", Precision.INT4), (" INT4 ", Precision.INT4),
    ("Int8", Precision.INT8), (Precision.INT4, Precision.INT4),
])
def test_parse_precision_accepts_the_three_names(text, expected):
    assert parse_precision(text) is expected


@pytest.mark.parametrize("text", ["int2", "fp8", "nf4", "q4_0", "", "8", "float32", None, 8])
def test_parse_precision_refuses_anything_else(text):
    with pytest.raises(PrecisionError, match="none, int8, int4|must be a string"):
        parse_precision(text)


@pytest.mark.parametrize("out_features, in_features, precision, expected", [
    (8, 32, "none", 8 * 32 * 4),
    (8, 32, "int8", 8 * 32 + 8 * 2),
    (8, 32, "int4", 8 * 16 + 8 * 4),  # a scale and a minimum per group
    (9, 33, "int8", 16 * 64 + 16 * 2 * 2),  # padded to 2 tiles of outputs, 2 groups of inputs
    (9, 33, "int4", 16 * 32 + 16 * 2 * 4),
    (11008, 4096, "int8", 11008 * 4096 + 11008 * 128 * 2),
    (11008, 4096, "int4", 11008 * 2048 + 11008 * 128 * 4),
])
def test_quantized_bytes_table(out_features, in_features, precision, expected):
    assert quantized_bytes(out_features, in_features, precision) == expected


@pytest.mark.parametrize("precision, limit", [("int8", 0.30), ("int4", 0.17)])
@pytest.mark.parametrize("out_features, in_features", [(1024, 1024), (2816, 1024), (576, 1536), (11008, 4096)])
def test_memory_ratio_of_real_shapes(precision, limit, out_features, in_features):
    ratio = quantized_bytes(out_features, in_features, precision) / quantized_bytes(out_features, in_features, "none")
    assert ratio <= limit


@pytest.mark.parametrize("precision", QUANTIZED)
@pytest.mark.parametrize("out_features, in_features", SHAPES)
def test_stored_bytes_match_the_arithmetic(precision, out_features, in_features):
    weight, _ = weight_and_input(out_features, in_features, 1)
    quantized = QuantizedWeight.from_float(weight, precision)
    assert quantized.nbytes == quantized_bytes(out_features, in_features, precision)


@pytest.mark.parametrize("precision", QUANTIZED)
def test_quantizing_in_chunks_of_rows_gives_the_same_bytes(precision):
    weight, _ = weight_and_input(45, 70, 1, seed=12)
    whole = QuantizedWeight.from_float(weight, precision)
    for rows in (8, 16, 40):
        chunked = QuantizedWeight.from_float(weight, precision, rows_per_chunk=rows)
        assert torch.equal(chunked.packed, whole.packed) and torch.equal(chunked.scales, whole.scales)
    with pytest.raises(ValueError, match="multiple of 8"):
        QuantizedWeight.from_float(weight, precision, rows_per_chunk=12)


@pytest.mark.parametrize("precision", QUANTIZED)
def test_each_weight_is_within_half_a_step_of_its_level(precision):
    """int8: step max|w| / 127 around 0; int4: step (max - min) / 15 from the minimum (float16, so a hair more)."""
    weight, _ = weight_and_input(64, 256, 1)
    weight[3, :32] += 1.0  # a group far from zero: the asymmetric int4 grid follows it
    restored = QuantizedWeight.from_float(weight, precision).dequantize()
    groups = weight.view(64, 8, 32)
    if precision is Precision.INT8:
        step, slack = groups.abs().amax(-1, keepdim=True) / 127, 0
    else:
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        step, slack = (high - low) / 15, low.abs() * 2**-11  # the minimum is stored as float16
    error = (restored - weight).view(64, 8, 32).abs()
    assert (error <= step / 2 * (1 + 2**-9) + slack).all()
    assert (error > 0).any()  # it did quantize


def test_a_weight_already_on_an_int4_grid_comes_back_exactly():
    """Weights dequantized from a GGUF Q4_1 file (d * q + m, float16 d and m, groups of 32) lose nothing more."""
    g = torch.Generator().manual_seed(4)
    d = (torch.rand(64, 16, 1, generator=g) * 0.01 + 1e-4).half().float()
    m = (-torch.rand(64, 16, 1, generator=g) * 0.1).half().float()
    q = torch.randint(0, 16, (64, 16, 32), generator=g).float()
    q[..., 0], q[..., 1] = 0, 15  # every group uses its whole range, as a quantizer leaves it
    weight = (q * d + m).view(64, 512)
    assert torch.equal(QuantizedWeight.from_float(weight, "int4").dequantize(), weight)


# Gaussian weights: a group of 32 spans about +-2.1 sigma, so a step is 2.1 sigma / 127 (int8) or 4.2 sigma / 15
# (int4), and rounding leaves step / sqrt(12) of noise per weight: about 0.5% (int8; activations add ~0.5%) and 8%.
@pytest.mark.parametrize("precision, mean_bound, max_bound", [(Precision.INT8, 0.01, 0.02), (Precision.INT4, 0.10, 0.16)])
def test_output_error_is_what_the_bit_width_implies(precision, mean_bound, max_bound):
    weight, x = weight_and_input(96, 512, 64, seed=1)
    expected = x @ weight.T
    got = qmatmul(x, QuantizedWeight.from_float(weight, precision))
    per_output = (got - expected).norm(dim=0) / expected.norm(dim=0)  # relative error of every output channel
    assert per_output.mean() < mean_bound and per_output.max() < max_bound
    assert per_output.mean() > mean_bound / 4  # and not float32 in disguise


@pytest.mark.parametrize("kernel", available_kernels())
@pytest.mark.parametrize("precision", QUANTIZED)
@pytest.mark.parametrize("out_features, in_features", SHAPES)
def test_a_row_gives_the_same_bits_alone_and_inside_any_call(kernel, precision, out_features, in_features):
    weight, x = weight_and_input(out_features, in_features, 17, seed=2)
    quantized = QuantizedWeight.from_float(weight, precision)
    alone = torch.cat([qmatmul(x[i : i + 1], quantized, kernel=kernel) for i in range(17)])
    for rows in (1, 3, 17):
        batched = torch.cat([qmatmul(x[i : i + rows], quantized, kernel=kernel) for i in range(0, 17, rows)])
        assert torch.equal(batched, alone)
    assert torch.equal(qmatmul(x.view(1, 17, in_features), quantized, kernel=kernel)[0], alone)


@pytest.mark.parametrize("precision", QUANTIZED)
@pytest.mark.parametrize("out_features, in_features", SHAPES + [(520, 1100)])
def test_every_kernel_and_thread_count_gives_the_same_bits(precision, out_features, in_features):
    weight, x = weight_and_input(out_features, in_features, 9, seed=3)
    x[0, :5] = 0.0  # a group that is partly zero
    x[1] = 0.0  # and a row that is all zero
    x[2, 3] = 40.0  # an outlier
    quantized = QuantizedWeight.from_float(weight, precision)
    reference = qmatmul(x, quantized, kernel="torch")
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            for kernel in available_kernels():
                assert torch.equal(qmatmul(x, quantized, kernel=kernel), reference), (kernel, count)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("precision", QUANTIZED)
def test_fusing_weights_along_the_outputs_changes_no_bit(precision):
    """Each output depends only on its own weight row, so q/k/v (or gate/up) may share one call: same bits."""
    g = torch.Generator().manual_seed(9)
    parts = [torch.randn(n, 96, generator=g) for n in (24, 13, 13)]
    x = torch.randn(5, 96, generator=g)
    separate = torch.cat([qmatmul(x, QuantizedWeight.from_float(w, precision)) for w in parts], dim=1)
    assert torch.equal(qmatmul(x, QuantizedWeight.from_float(torch.cat(parts), precision)), separate)


DIGEST_SCRIPT = """
import hashlib, sys, torch
from potluck.core.model.quant.weight import QuantizedWeight, qmatmul
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(5)
w, x = torch.randn(100, 200, generator=g), torch.randn(7, 200, generator=g)
for p in ("int8", "int4"):
    q = QuantizedWeight.from_float(w, p)
    h = hashlib.sha256(q.packed.numpy().tobytes() + q.scales.view(torch.int16).numpy().tobytes())
    h.update(qmatmul(x, q).numpy().tobytes())
    print(p, h.hexdigest())
"""


def test_quantization_and_results_are_the_same_in_other_processes():
    digests = {subprocess.run([sys.executable, "-c", DIGEST_SCRIPT, str(threads)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=True).stdout for threads in (1, 2)}
    assert len(digests) == 1
    here = _digests()
    assert digests.pop().split() == here


def _digests() -> list[str]:
    g = torch.Generator().manual_seed(5)
    w, x = torch.randn(100, 200, generator=g), torch.randn(7, 200, generator=g)
    out = []
    for p in ("int8", "int4"):
        first, second = QuantizedWeight.from_float(w, p), QuantizedWeight.from_float(w.clone(), p)
        assert torch.equal(first.packed, second.packed) and torch.equal(first.scales, second.scales)
        h = hashlib.sha256(first.packed.numpy().tobytes() + first.scales.view(torch.int16).numpy().tobytes())
        h.update(qmatmul(x, first).numpy().tobytes())
        out += [p, h.hexdigest()]
    return out


@pytest.mark.parametrize("weight, message", [
    (torch.randn(2, 4, 4), "2-D"),
    (torch.tensor([[1.0, float("nan")]]), "inf or NaN"),
    (torch.ones(2, 2, dtype=torch.int32), "floating point"),
    (torch.full((2, 2), 1e7), "float16 scales"),
])
def test_weights_that_cannot_be_stored_are_refused(weight, message):
    with pytest.raises(QuantizationError, match=message):
        QuantizedWeight.from_float(weight, "int8")


def test_an_empty_batch_gives_an_empty_result():
    quantized = QuantizedWeight.from_float(torch.randn(8, 32), "int8")
    for kernel in available_kernels():
        assert qmatmul(torch.randn(0, 32), quantized, kernel=kernel).shape == (0, 8)


def test_an_input_of_the_wrong_width_is_refused():
    quantized = QuantizedWeight.from_float(torch.randn(8, 32), "int4")
    with pytest.raises(ValueError, match="expects 32"):
        qmatmul(torch.randn(2, 31), quantized)


