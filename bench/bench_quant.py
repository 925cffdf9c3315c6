"""Quantized linear layers on the CPU: every kernel tried, against float32 measured in the same run.

    python bench/bench_quant.py            # all shapes, decode (1 row) and prefill (128 rows), blocks (~3 min)
    python bench/bench_quant.py --quick    # smoke run: SmolLM2 shapes and the SmolLM2-sized block, few repeats
    python bench/bench_quant.py --threads 1 --torchao /tmp/torchao_pkg --json out.json

Linear table, per weight shape: median milliseconds of one call for 1 row (decode) and 128 rows (prefill), the
ratio to float32 F.linear timed in the same rounds (candidates take turns, so a load change hits all of them),
the relative error against float32 (Frobenius norm over the 128-row output), and `rows`: whether a row's output is
the same bits alone as inside a 17-row call (the swarm's exactness needs yes). `*` marks the kernel Potluck uses.
Block table: one Llama decoder layer, decode step with 128 cached tokens and a 128-token prefill, float32 vs the
chosen kernels, with the targets of the quantization issue (decode <= 0.5x for int8, <= 0.6x for int4).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

try:
    from bench import common
    from bench.quant_candidates import CANDIDATES, chosen_names
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common
    from quant_candidates import CANDIDATES, chosen_names

# name -> (out_features, in_features)
SHAPES = {
    "7B up 11008x4096": (11008, 4096),
    "7B down 4096x11008": (4096, 11008),
    "SmolLM2 q/o 576x576": (576, 576),
    "SmolLM2 k/v 192x576": (192, 576),
    "SmolLM2 gate/up 1536x576": (1536, 576),
    "SmolLM2 down 576x1536": (576, 1536),
}
QUICK_SHAPES = ["SmolLM2 q/o 576x576", "SmolLM2 gate/up 1536x576"]
# name -> (hidden, intermediate, heads, kv heads)
BLOCKS = {"Llama hidden 1024": (1024, 2816, 16, 8), "SmolLM2-135M block": (576, 1536, 9, 3)}
TARGETS = {"int8": 0.5, "int4": 0.6}
PREFILL_ROWS = 128
CACHED_TOKENS = 128


def timed(fn, min_seconds: float) -> float:
    """Seconds per call: the mean over as many calls as fill `min_seconds` (at least one)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def measure_shape(out_features, in_features, candidates, reps, log):
    import torch

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(out_features, in_features, generator=g) * 0.02
    x = torch.randn(PREFILL_ROWS, in_features, generator=g)
    expected = torch.nn.functional.linear(x, weight)
    built, rows = {}, {}
    for c in candidates:
        try:
            forward = c.build(weight)
            with torch.inference_mode():
                y = forward(x[:17] if c.slow else x)
                reference = expected[: y.shape[0]]
                rows[c.name] = {"error": float((y - reference).norm() / reference.norm())}
                y17 = forward(x[:17])
                rows[c.name]["row_independent"] = all(
                    torch.equal(forward(x[i : i + 1])[0], y17[i]) for i in ((0,) if c.slow else (0, 5, 16)))
            built[c.name] = forward
        except Exception as error:  # noqa: BLE001 - a candidate that cannot run here is reported, not fatal
            rows[c.name] = {"skipped": f"{type(error).__name__}: {str(error).splitlines()[0][:70]}"}
    decode, prefill = {n: [] for n in built}, {n: [] for n in built}
    slow = {c.name for c in candidates if c.slow}
    with torch.inference_mode():
        for rep in range(reps):
            for name, forward in built.items():
                one = x[:1]
                decode[name].append(timed(lambda: forward(one), 0.02))
                if name not in slow and (rep < 2 or decode[name][0] < 0.05):
                    prefill[name].append(timed(lambda: forward(x), 0.0))
            log(f"  rep {rep + 1}/{reps}")
    for name in built:
        rows[name]["decode_ms"] = statistics.median(decode[name]) * 1e3
        rows[name]["prefill_ms"] = statistics.median(prefill[name]) * 1e3 if prefill[name] else None
    return rows


def shape_table(title, rows) -> str:
    base = rows["fp32 F.linear (baseline)"]
    lines = [f"\n{title}", f"  {'kernel':42} {'decode ms':>10} {'x fp32':>7} {'prefill ms':>11} {'x fp32':>7} "
                           f"{'rel.err':>8} {'rows':>4}"]
    for name, r in rows.items():
        mark = "*" if name in chosen_names() else " "
        if "skipped" in r:
            lines.append(f"{mark} {name:42} skipped: {r['skipped']}")
            continue
        pre = r["prefill_ms"]
        pre_text = f"{pre:11.2f} {pre / base['prefill_ms']:7.2f}" if pre else f"{'-':>11} {'-':>7}"
        lines.append(f"{mark} {name:42} {r['decode_ms']:10.3f} {r['decode_ms'] / base['decode_ms']:7.2f} {pre_text} "
                     f"{r['error']:8.4f} {'yes' if r['row_independent'] else 'NO':>4}")
    return "\n".join(lines)


def build_block(hidden, intermediate, heads, kv_heads):
    """A transformers LlamaDecoderLayer with random weights, and its rotary embedding."""
    import torch
    from torch import nn
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, num_hidden_layers=1, vocab_size=128)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    layer = LlamaDecoderLayer(config, 0).eval().requires_grad_(False)
    for module in layer.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
    return layer, LlamaRotaryEmbedding(config)


def run_layer(layer, rotary, chunk, cache, start):
    import torch

    positions = torch.arange(start, start + chunk.shape[1]).unsqueeze(0)
    return layer(chunk, attention_mask=None, position_embeddings=rotary(chunk, positions), position_ids=positions,
                 cache=cache, use_cache=True)


def measure_block(dims, reps, steps, log):
    """Per variant: median prefill and decode-step milliseconds, error against float32, bytes against float32."""
    import torch
    from transformers import DynamicCache

    from potluck.core.model.quant.modules import quantize_module

    layer, rotary = build_block(*dims)
    variants, reports = {"fp32": layer}, {}
    for precision in ("int8", "int4"):
        variants[precision] = copy.deepcopy(layer)
        reports[precision] = quantize_module(variants[precision], precision)
    variants["bf16"] = copy.deepcopy(layer).to(torch.bfloat16)
    hidden = torch.randn(1, CACHED_TOKENS + steps, dims[0])
    times = {name: {"decode": [], "prefill": []} for name in variants}
    outputs = {}
    with torch.inference_mode():
        for rep in range(reps):
            for name, variant in variants.items():
                h = hidden.to(torch.bfloat16) if name == "bf16" else hidden
                cache = DynamicCache()
                start = time.perf_counter()
                prefix = run_layer(variant, rotary, h[:, :CACHED_TOKENS], cache, 0)
                times[name]["prefill"].append(time.perf_counter() - start)
                for i in range(CACHED_TOKENS, CACHED_TOKENS + steps):
                    start = time.perf_counter()
                    last = run_layer(variant, rotary, h[:, i : i + 1], cache, i)
                    times[name]["decode"].append(time.perf_counter() - start)
                outputs[name] = torch.cat([prefix[:, -1:], last], dim=1).float()
            log(f"  rep {rep + 1}/{reps}")
    result = {name: {k: statistics.median(v) * 1e3 for k, v in t.items()} for name, t in times.items()}
    residual = hidden[:, [CACHED_TOKENS - 1, CACHED_TOKENS + steps - 1]]
    reference = outputs["fp32"] - residual  # what the layer adds to the residual stream
    for name in variants:
        result[name]["error"] = float((outputs[name] - residual - reference).norm() / reference.norm())
    for precision, report in reports.items():
        result[precision]["bytes_ratio"] = report.ratio
    return result


def block_table(title, result) -> str:
    base = result["fp32"]
    lines = [f"\n{title}: decode step with {CACHED_TOKENS} cached tokens, {PREFILL_ROWS}-token prefill",
             f"  {'weights':8} {'decode ms':>10} {'x fp32':>7} {'target':>8} {'prefill ms':>11} {'x fp32':>7} "
             f"{'bytes x fp32':>13} {'rel.err':>8}"]
    for name, r in result.items():
        ratio = r["decode"] / base["decode"]
        target = TARGETS.get(name)
        verdict = f"<={target} {'ok' if ratio <= target else 'MISS'}" if target else ""
        size = f"{r['bytes_ratio']:13.3f}" if "bytes_ratio" in r else f"{'1' if name == 'fp32' else '0.5':>13}"
        lines.append(f"  {name:8} {r['decode']:10.3f} {ratio:7.2f} {verdict:>8} {r['prefill']:11.2f} "
                     f"{r['prefill'] / base['prefill']:7.2f} {size} {r['error']:8.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: two SmolLM2 shapes, one block, 2 repeats")
    parser.add_argument("--reps", type=int, default=None, help="rounds per measurement (default 5, quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--torchao", default=None, help="a folder holding torchao (pip install --no-deps --target)")
    parser.add_argument("--shapes", default=None, help="comma-separated shape names (default: all; '' for none)")
    parser.add_argument("--no-blocks", action="store_true", help="skip the decoder-layer table")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    args = parser.parse_args(argv)
    common.set_thread_environment()
    if args.torchao:
        sys.path.insert(0, args.torchao)
    import torch

    from potluck.core.model.quant.weight import kernel_info

    if args.threads:
        torch.set_num_threads(args.threads)
    reps = args.reps or (2 if args.quick else 5)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    info = kernel_info()
    print(common.machine_line(common.machine_info()))
    print(f"potluck kernel: {info['kernel']} (needs {', '.join(info['needs'].get(info['kernel'], []))}; CPU has "
          f"{', '.join(info['cpu_features']) or 'none detected'}), load error: {info['load_error']}")
    names = QUICK_SHAPES if args.quick else list(SHAPES)
    if args.shapes is not None:  # "" runs no linear table
        names = [n for n in args.shapes.split(",") if n]
        unknown = [n for n in names if n not in SHAPES]
        if unknown:
            parser.error(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    results: dict = {"machine": common.machine_info(), "kernel": info, "shapes": {}, "blocks": {}}
    for name in names:
        log(f"shape {name}")
        results["shapes"][name] = measure_shape(*SHAPES[name], CANDIDATES, reps, log)
        print(shape_table(f"{name} (out x in)", results["shapes"][name]), flush=True)
    if not args.no_blocks:
        for name in (["SmolLM2-135M block"] if args.quick else list(BLOCKS)):
            log(f"block {name}")
            results["blocks"][name] = measure_block(BLOCKS[name], reps, 8 if args.quick else 32, log)
            print(block_table(name, results["blocks"][name]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
