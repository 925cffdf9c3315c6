"""Every linear-layer kernel bench_quant.py compares: each one built from the same float weight [out, in].

A candidate is `(name, precision, build)`; `build(weight)` returns `forward(x [rows, in]) -> [rows, out]` or raises
(the bench prints why it was skipped). `precision` is the class it competes in: "float", "int8" or "int4".
Nothing here runs at import; torch is imported inside the builders' module-level helpers only when called.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

NATIVE = {"avxvnni": "AVX-VNNI", "avx512vnni": "AVX512-VNNI", "avx2": "AVX2", "portable": "portable C"}


def chosen_names() -> set[str]:
    """The candidates Potluck's "auto" picks on this machine (one per precision)."""
    from potluck.core.model.quant.weight import select_kernel

    kernel = select_kernel("auto")
    label = NATIVE.get(kernel, "torch fallback")
    return {f"potluck int8 ({label})", f"potluck int4 ({label})"}


@dataclass(frozen=True)
class Candidate:
    name: str
    precision: str  # "float", "int8", "int4"
    build: Callable
    slow: bool = False  # seconds per prefill call: timed on decode only


def _per_channel_int8(weight):
    import torch

    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def fp32(weight):
    import torch.nn.functional as F

    return lambda x: F.linear(x, weight)


def bf16(weight):
    import torch
    import torch.nn.functional as F

    w = weight.to(torch.bfloat16)
    return lambda x: F.linear(x.to(torch.bfloat16), w).float()


def _fbgemm_module(weight):
    import torch
    from torch import nn

    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    return torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), spec, dtype=torch.qint8)


def fbgemm_dynamic(weight):
    """torch.ao dynamic qint8 (fbgemm): one activation scale for the whole call, so rows are coupled."""
    module = _fbgemm_module(weight)
    return lambda x: module(x)


def fbgemm_dynamic_per_row(weight):
    """The same kernel called once per row: rows stay apart, at the price of one call each."""
    import torch

    module = _fbgemm_module(weight)
    return lambda x: torch.cat([module(x[i : i + 1]) for i in range(x.shape[0])])


def int_mm_per_row(weight):
    """W8A8 with per-row activation scales: torch._int_mm (oneDNN, int32 accumulation) then float scaling."""
    import torch

    wq, ws = _per_channel_int8(weight)
    wt = wq.t()

    def forward(x):
        xs = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
        xq = torch.round(x / xs).clamp(-127, 127).to(torch.int8)
        return torch._int_mm(xq, wt).float() * (xs * ws)

    return forward


def weight_int8pack(weight):
    import torch

    wq, ws = _per_channel_int8(weight)
    return lambda x: torch._weight_int8pack_mm(x, wq, ws)


def dequantize_int8(weight):
    import torch.nn.functional as F

    wq, ws = _per_channel_int8(weight)
    return lambda x: F.linear(x, wq.float() * ws[:, None])


def weight_int4pack(weight):
    """torch._weight_int4pack_mm_for_cpu, group 32, asymmetric (scale and zero per group)."""
    import torch

    out_features, in_features = weight.shape
    groups = weight.view(out_features, in_features // 32, 32)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-12)
    q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32).view(out_features, -1)
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 8)
    zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
    scales_and_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
    return lambda x: torch._weight_int4pack_mm_for_cpu(x, packed, 32, scales_and_zeros)


def _torchao(config_name):
    def build(weight):
        if importlib.util.find_spec("torchao") is None:
            raise RuntimeError("torchao not importable (pip install --no-deps --target DIR torchao; --torchao DIR)")
        import torch
        import torchao.quantization as tq
        from torch import nn

        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            linear.weight.copy_(weight)
        module = nn.Sequential(linear)
        tq.quantize_(module, getattr(tq, config_name)())
        return lambda x: module(x)

    return build


def _potluck(precision, kernel):
    def build(weight):
        from potluck.core.model.quant.weight import QuantizedWeight, qmatmul, select_kernel

        select_kernel(kernel)  # raises when this kernel cannot run here
        quantized = QuantizedWeight.from_float(weight, precision)
        return lambda x: qmatmul(x, quantized, kernel=kernel)

    return build


CANDIDATES = [
    Candidate("fp32 F.linear (baseline)", "float", fp32),
    Candidate("bf16 F.linear", "float", bf16),
    Candidate("fbgemm dynamic qint8, per-tensor act.", "int8", fbgemm_dynamic),
    Candidate("fbgemm dynamic qint8, call per row", "int8", fbgemm_dynamic_per_row),
    Candidate("torch._int_mm W8A8, per-row act.", "int8", int_mm_per_row),
    Candidate("torch._weight_int8pack_mm", "int8", weight_int8pack, slow=True),
    Candidate("int8 dequantize + fp32 matmul", "int8", dequantize_int8),
    Candidate("torchao Int8DynActInt8Weight", "int8", _torchao("Int8DynamicActivationInt8WeightConfig")),
    Candidate("torchao Int8WeightOnly", "int8", _torchao("Int8WeightOnlyConfig"), slow=True),
    *[Candidate(f"potluck int8 ({label})", "int8", _potluck("int8", kernel), slow=kernel == "portable")
      for kernel, label in NATIVE.items()],
    Candidate("potluck int8 (torch fallback)", "int8", _potluck("int8", "torch"), slow=True),
    Candidate("torch._weight_int4pack_mm_for_cpu g32", "int4", weight_int4pack),
    *[Candidate(f"potluck int4 ({label})", "int4", _potluck("int4", kernel), slow=kernel == "portable")
      for kernel, label in NATIVE.items()],
    Candidate("potluck int4 (torch fallback)", "int4", _potluck("int4", "torch"), slow=True),
]
