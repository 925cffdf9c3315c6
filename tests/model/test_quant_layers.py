"""Quantized layers as modules (potluck.core.model.quant): nn.Linear and whole decoder layers, kernel choice and
fallback, the native library, and what stays light."""

from __future__ import annotations

import copy
import gc
import platform
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

from potluck.core.model.quant import native
from potluck.core.model.quant.format import FORMAT_TAG, Precision, PrecisionError
from potluck.core.model.quant.modules import QuantizedLinear, quantize_linear, quantize_module
from potluck.core.model.quant.weight import (
    KERNEL_ENV,
    KernelUnavailableError,
    QuantizedWeight,
    available_kernels,
    kernel_info,
    qmatmul,
    select_kernel,
)

ROOT = Path(__file__).resolve().parents[2]


def weight_and_input(out_features, in_features, rows, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(out_features, in_features, generator=g) * 0.05,
            torch.randn(rows, in_features, generator=g))


def test_the_native_library_is_built_on_linux_x86_64():
    """pip install -e . compiles kernels.c with gcc; without it every call takes the slow torch kernel."""
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        pytest.skip("the SIMD kernels are built for Linux x86-64 only")
    assert native.load_error() is None, f"{native.load_error()} -- rebuild: pip install -e . (needs gcc)"
    info = kernel_info()
    assert info["library"] and "openmp" in info["cpu_features"]
    features = set(info["cpu_features"])
    assert ("avx2" in info["available"]) == ({"avx2", "fma", "f16c"} <= features)
    assert ("avxvnni" in info["available"]) == ({"avx2", "fma", "f16c", "avxvnni"} <= features)
    assert info["kernel"] == info["available"][0] != "torch"


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_bias_is_kept_exactly(precision):
    weight, x = weight_and_input(24, 64, 5, seed=6)
    with_bias, without = nn.Linear(64, 24), nn.Linear(64, 24, bias=False)
    with torch.no_grad():
        with_bias.weight.copy_(weight)
        without.weight.copy_(weight)
    q_with, q_without = quantize_linear(with_bias, precision), quantize_linear(without, precision)
    assert isinstance(q_with, QuantizedLinear) and q_without.bias is None
    assert torch.equal(q_with(x), q_without(x) + with_bias.bias.detach())
    expected = with_bias(x).detach()
    assert (q_with(x) - expected).norm() / expected.norm() < 0.15


def test_forward_keeps_the_input_dtype_and_leading_dimensions():
    layer = quantize_linear(nn.Linear(64, 24), "int8")
    x = torch.randn(2, 3, 64)
    assert layer(x).shape == (2, 3, 24)
    assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16
    assert torch.equal(layer(x.transpose(0, 1).contiguous().transpose(0, 1)), layer(x))  # strided input


def test_converting_the_module_to_another_float_type_leaves_the_stored_weight_alone():
    layer = quantize_linear(nn.Linear(64, 24), "int4")
    x = torch.randn(3, 64)
    expected = layer(x)
    layer.float()
    assert torch.equal(layer(x), expected)
    layer.to(torch.bfloat16)
    assert layer.scales.dtype == torch.int16 and layer.bias.dtype == torch.bfloat16
    assert torch.allclose(layer(x), expected, atol=0.02)  # only the bias was rounded to bfloat16


@pytest.mark.parametrize("call", [
    lambda: quantize_linear(nn.Linear(4, 4), "int3"),
    lambda: quantize_module(nn.Sequential(nn.Linear(4, 4)), "fp8"),
    lambda: QuantizedWeight.from_float(torch.randn(4, 4), "bf16"),
])
def test_bad_precision_names_are_refused_everywhere(call):
    with pytest.raises(PrecisionError, match="choose one of"):
        call()


def test_sizing_needs_no_torch():
    code = "import sys, potluck.core.model.quant.format as f; f.quantized_bytes(8, 32, 'int4'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("path", sorted((ROOT / "core" / "model" / "quant").glob("*.py"))
                         + sorted(Path(__file__).parent.glob("test_quant*.py")), ids=lambda p: p.name)
def test_files_stay_readable(path):
    assert len(path.read_text().splitlines()) <= 400


def test_the_kernel_is_chosen_from_the_environment_at_call_time(monkeypatch):
    weight, x = weight_and_input(40, 96, 3, seed=7)
    quantized = QuantizedWeight.from_float(weight, "int4")
    fast = qmatmul(x, quantized)
    monkeypatch.setenv(KERNEL_ENV, "torch")
    assert select_kernel() == "torch" and kernel_info()["forced"] == "torch"
    assert torch.equal(qmatmul(x, quantized), fast)
    monkeypatch.setenv(KERNEL_ENV, "sse9")
    with pytest.raises(KernelUnavailableError, match="choose auto"):
        qmatmul(x, quantized)


def test_without_the_native_library_everything_falls_back_to_torch(monkeypatch, tmp_path):
    weight, x = weight_and_input(40, 96, 3, seed=8)
    quantized = QuantizedWeight.from_float(weight, "int8")
    expected = qmatmul(x, quantized, kernel="torch")
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "candidate_paths", lambda folder=None: [])
    assert available_kernels() == ["torch"]
    assert kernel_info()["kernel"] == "torch" and "not built" in kernel_info()["load_error"]
    assert torch.equal(qmatmul(x, quantized), expected)
    with pytest.raises(KernelUnavailableError, match="not built"):
        qmatmul(x, quantized, kernel="avx2")


def test_a_library_that_is_not_ours_is_not_loaded(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_state", {})
    libc = Path("/lib/x86_64-linux-gnu/libm.so.6")
    if not libc.is_file():
        pytest.skip("no libm at the Debian path")
    monkeypatch.setattr(native, "candidate_paths", lambda folder=None: [libc])
    assert native.library() is None and "not Potluck's kernel library" in native.load_error()


def llama_layer(hidden=128, intermediate=352):
    """A transformers LlamaDecoderLayer with random weights (grouped-query attention) and its rotary embedding."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=4,
                         num_key_value_heads=2, num_hidden_layers=1, vocab_size=64)
    config._attn_implementation = "sdpa"
    torch.manual_seed(11)
    layer = LlamaDecoderLayer(config, 0).eval().requires_grad_(False)
    for module in layer.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.05)
        elif hasattr(module, "weight") and module.weight is not None:
            nn.init.normal_(module.weight, mean=1.0, std=0.1)  # RMSNorm
    return layer, LlamaRotaryEmbedding(config)


def run_decoder(layer, rotary, hidden):
    """A 12-token prefill, then 4 single-token steps, on a fresh cache: the per-token outputs stacked."""
    from transformers import DynamicCache

    cache, outputs, done = DynamicCache(), [], 0
    with torch.inference_mode():
        for length in (12, 1, 1, 1, 1):
            chunk = hidden[:, done : done + length]
            positions = torch.arange(done, done + length).unsqueeze(0)
            outputs.append(layer(chunk, attention_mask=None, position_embeddings=rotary(chunk, positions),
                                 position_ids=positions, cache=cache, use_cache=True))
            done += length
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("precision, bound, ratio_limit", [("int8", 0.03, 0.30), ("int4", 0.20, 0.17)])
def test_a_llama_decoder_layer_runs_quantized_and_stays_close(precision, bound, ratio_limit):
    layer, rotary = llama_layer()
    hidden = torch.randn(1, 16, 128)
    expected = run_decoder(layer, rotary, hidden)
    quantized = copy.deepcopy(layer)
    old_weight = weakref.ref(quantized.mlp.down_proj.weight)
    report = quantize_module(quantized, precision)
    gc.collect()
    assert old_weight() is None  # the float weight is gone
    assert report.linear_layers == 7 and not any(isinstance(m, nn.Linear) for m in quantized.modules())
    linear_bytes = sum(p.numel() * 4 for n, p in layer.named_parameters() if "proj" in n)
    quantized_linear_bytes = sum(b.numel() * b.element_size() for b in quantized.buffers())
    assert quantized_linear_bytes / linear_bytes <= ratio_limit
    assert report.ratio <= ratio_limit + 0.01  # the two RMSNorm weights stay float32
    got = run_decoder(quantized, rotary, hidden)
    delta, expected_delta = got - hidden, expected - hidden  # what the layer adds to the residual stream
    assert (delta - expected_delta).norm() / expected_delta.norm() < bound


def test_precision_none_changes_nothing():
    layer = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    report = quantize_module(layer, "none")
    assert report.bytes_before == report.bytes_after and report.linear_layers == 0
    assert isinstance(layer[0], nn.Linear) and quantize_linear(layer[0], Precision.NONE) is layer[0]


def test_format_tags_name_precision_group_and_version():
    assert FORMAT_TAG[Precision.INT4] == "int4-asym-g32-a8g32-v1"
    assert FORMAT_TAG[Precision.INT8] == "int8-sym-g32-a16g32-v1"
