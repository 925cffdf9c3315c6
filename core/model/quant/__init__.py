"""Quantized linear layers for CPU block servers: weights at 8 or 4 bits, decode faster than float32.

Files and roles:
- format.py     Precision (none/int8/int4), parse_precision, quantized_bytes, FORMAT_TAG: the storage format and
                the arithmetic contract as data (no torch; safe to import for sizing).
- packing.py    float weight -> integer levels + float16 scales -> the tiled bytes the kernels read, and back.
- kernels.c     the native kernels (AVX2 and portable C; plain C, built by setup.py as `_kernels`, loaded by ctypes).
- native.py     finds and loads that library on first use; records why when it cannot.
- reference.py  the pure-torch kernel, the same bits as kernels.c (fallback and test reference).
- weight.py     QuantizedWeight.from_float, qmatmul(x, weight), kernel choice (POTLUCK_QUANT_KERNEL), kernel_info().
- modules.py    QuantizedLinear, quantize_linear(nn.Linear, precision), quantize_module(module, precision).

Typical use on a server, right after a decoder layer is materialised:

    from potluck.core.model.quant.modules import quantize_module
    report = quantize_module(layer, "int4")     # report.bytes_before, report.bytes_after

Nothing is imported here, so `import potluck.core.model.quant.format` stays free of torch.
"""
