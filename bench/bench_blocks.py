"""What one block costs per decoded token, dense and mixture-of-experts, and what that means for a 120B swarm.

    python bench/bench_blocks.py                  # measure (about 4-6 minutes), then print the plan
    python bench/bench_blocks.py --wide           # also a block at gpt-oss-120b's own width (the plan then uses it)
    python bench/bench_blocks.py --plan-only      # only the plan, at --bandwidth-gbps (default 40)
    python bench/bench_blocks.py --quick          # fewer steps, float32 / int8 / int4 only (about 2 minutes)
    python bench/bench_blocks.py --quick --reps 5 --threads 1   # steadier on a busy machine
    python bench/bench_blocks.py --quick --block gpt-oss        # only the blocks whose name contains "gpt-oss"

Measured here: the machine's memory read bandwidth (sum over a 1 GiB float32 tensor), and the single-token decode
time of one block with 256 tokens of context: a dense Llama-like block and gpt-oss-like and Qwen3-MoE-like blocks
(the published models' expert counts, top-k and width ratios, scaled to hidden 1024; `--wide` adds one at
gpt-oss-120b's own width), in float32 and bfloat16 with transformers' default expert kernel (grouped_mm) and its
eager loop, and quantized as `load_blocks(quant=...)` does it (int8 / int4 linear layers and experts, the
`potluck` expert loop of families/experts.py; the rest float32). A block's variants take turns in each of `--reps`
rounds; each figure is the median over rounds of the per-step median; "x fp32" is the median of the per-round
ratios to the float32 block (grouped_mm). "GB/s eff." is the bytes one token reads in the block (attention + router
+ top-k experts, at the block's precision) divided by that time; "x bw" that rate / the bandwidth.

The plan sizes gpt-oss-120b, Qwen3-235B-A22B and Llama 3.1 70B (numbers from their published config.json files)
for swarms of 16, 32 and 64 GiB PCs, leaving 4 GiB per PC for the OS and the attention cache, at bf16, int8 and
int4 (Potluck's formats, exact: `quantized_bytes`, 8.5 and 5 bits a weight with scales, vectors float32 as the
loader keeps them): PCs needed, blocks per PC, and tokens/s for one sequence = 1 / (time of all blocks + LM head
read on the client / bandwidth + (PCs + 1) one-way hops), where a block's time is its active bytes / bandwidth
("bound"), or the float32 block's at the measured efficiency times the measured ratio of the precision ("meas.",
see plan_rows).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common

GIB = 2**30
OS_AND_CACHE_GIB = 4  # left free on every PC
PC_RAM_GIB = (16, 32, 64)
PRECISIONS = ("bf16", "int8", "int4")  # bf16: 2 bytes a value; int8 / int4: quantized_bytes, vectors float32
MEASURED_AS = {"bf16": "bfloat16", "int8": "float32+int8", "int4": "float32+int4"}  # bench compute of each plan row
LINK_ONE_WAY_MS = (2.0, 20.0)
CONTEXT_TOKENS = 256
# the bench blocks shaped like each published model, the closest first (see bench_configs; the first measured is used)
BENCH_BLOCK_OF = {"gpt-oss-120b": ("gpt-oss-120b width 16e top-4", "gpt-oss-like 128e top-4"),
                  "Qwen3-235B-A22B": ("Qwen3-MoE-like 128e top-8",), "Llama-3.1-70B": ("dense (Llama-like)",)}


def published_configs() -> dict:
    """The three models' shapes, from their published config.json files."""
    from transformers import GptOssConfig, LlamaConfig, Qwen3MoeConfig

    return {
        "gpt-oss-120b": GptOssConfig(
            num_hidden_layers=36, hidden_size=2880, intermediate_size=2880, num_local_experts=128, num_experts_per_tok=4,
            num_attention_heads=64, num_key_value_heads=8, head_dim=64, sliding_window=128, vocab_size=201088,
            tie_word_embeddings=False),
        "Qwen3-235B-A22B": Qwen3MoeConfig(
            num_hidden_layers=94, hidden_size=4096, intermediate_size=12288, moe_intermediate_size=1536, num_experts=128,
            num_experts_per_tok=8, num_attention_heads=64, num_key_value_heads=4, head_dim=128, vocab_size=151936,
            tie_word_embeddings=False, norm_topk_prob=True),
        "Llama-3.1-70B": LlamaConfig(
            num_hidden_layers=80, hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8,
            head_dim=128, vocab_size=128256, tie_word_embeddings=False),
    }


def bench_configs(wide: bool = False) -> dict:
    """Blocks at hidden 1024 shaped like the published models (heads of 64, 4 key-value heads); with `wide`, also a
    block of gpt-oss-120b's own width (hidden and experts 2880, 64 / 8 heads, top-4) holding 16 of its 128 experts
    (1.6 GB in float32 instead of 12.8: a token reads 4 experts either way, and 16 do not fit a CPU cache either)."""
    from transformers import GptOssConfig, LlamaConfig, Qwen3MoeConfig

    attention = dict(hidden_size=1024, num_attention_heads=16, num_key_value_heads=4, head_dim=64, num_hidden_layers=1,
                     vocab_size=384)
    return {
        "dense (Llama-like)": LlamaConfig(**attention, intermediate_size=3584),  # 70B's ratio 28672 / 8192
        "gpt-oss-like 128e top-4": GptOssConfig(**attention, intermediate_size=1024, num_local_experts=128,
                                                num_experts_per_tok=4, sliding_window=128, layer_types=["full_attention"]),
        "Qwen3-MoE-like 128e top-8": Qwen3MoeConfig(**attention, intermediate_size=3072, moe_intermediate_size=384,
                                                    num_experts=128, num_experts_per_tok=8),
    } | ({"gpt-oss-120b width 16e top-4": GptOssConfig(
        hidden_size=2880, intermediate_size=2880, num_attention_heads=64, num_key_value_heads=8, head_dim=64,
        num_hidden_layers=1, vocab_size=384, num_local_experts=16, num_experts_per_tok=4, sliding_window=128,
        layer_types=["full_attention"])} if wide else {})


# ---- the plan (pure arithmetic) ----------------------------------------------------------------------------------
def block_bytes(config, precision: str, active_only: bool = False) -> int:
    """Bytes of the largest block at `precision`: "bf16" 2 bytes a value; "int8" / "int4" as
    load_blocks holds them (matrices, experts included, in Potluck's format; vectors float32)."""
    from potluck.core.model.families import family_for
    from potluck.core.model.families.shapes import weight_bytes
    from potluck.core.model.quant.format import quantized_bytes

    family = family_for(config)
    indices = range(config.num_hidden_layers)
    if precision == "bf16":
        return max(weight_bytes(family.block_weights(config, i), 2, active_only=active_only) for i in indices)
    return max(weight_bytes(family.block_weights(config, i), 4, active_only=active_only,
                            matrix_bytes=lambda out, inp: quantized_bytes(out, inp, precision)) for i in indices)


@dataclass
class Measured:
    """What the bench measured for the block shaped like a model: float32's effective rate / bandwidth, and each
    plan precision's decode time / float32's (the "x fp32" column of its MEASURED_AS compute). Defaults:
    bandwidth-bound, and a precision not measured takes its byte ratio to float32."""

    efficiency: float = 1.0
    x_fp32: dict[str, float] = field(default_factory=dict)


def plan_rows(name: str, config, bandwidth_gbps: float, measured: Measured | None = None) -> list[dict]:
    """One row per precision and PC size; the client's bf16 LM head is read at the full bandwidth.

    Without `measured`, blocks read their active bytes at the full bandwidth (the bound). With it, a block takes the
    float32 block's time at the measured efficiency (float32 bytes / (efficiency x bandwidth)) times the measured
    time ratio of the precision to float32 ("x fp32" at hidden 1024), or its byte ratio when that was not measured
    (bf16 with --quick: 0.5, optimistic on CPUs without bf16 matrix units)."""
    head_bytes = config.vocab_size * config.hidden_size * 2  # the client's LM head, bf16, read once per token
    float32_read = 2 * block_bytes(config, "bf16", active_only=True)
    rows = []
    for precision in PRECISIONS:
        held, read = block_bytes(config, precision), block_bytes(config, precision, active_only=True)
        block_ms = 1000 * read / (bandwidth_gbps * 1e9)
        if measured is not None:  # never faster than the bound (a dense block can out-read torch's sum here)
            factor = measured.x_fp32.get(precision, read / float32_read)
            efficiency = min(measured.efficiency, 1.0)
            block_ms = max(block_ms, 1000 * float32_read / (efficiency * bandwidth_gbps * 1e9) * factor)
        for ram in PC_RAM_GIB:
            per_pc = int((ram - OS_AND_CACHE_GIB) * GIB // held)
            pcs = math.ceil(config.num_hidden_layers / per_pc) if per_pc else None
            compute_ms = config.num_hidden_layers * block_ms + 1000 * head_bytes / (bandwidth_gbps * 1e9)
            speeds = [1000 / (compute_ms + (pcs + 1) * link) if pcs else None for link in LINK_ONE_WAY_MS]
            rows.append(dict(model=name, precision=precision, ram_gib=ram, block_gib=held / GIB, read_mb=read / 1e6,
                             blocks_per_pc=per_pc, pcs=pcs, compute_ms=compute_ms, tokens_per_s=speeds))
    return rows


def print_plan(bandwidth_gbps: float, measured: dict[str, Measured]) -> None:
    """`measured`: published model -> what was measured for its bench block (see plan_rows)."""
    print(f"\nplan at {bandwidth_gbps:g} GB/s per PC, {OS_AND_CACHE_GIB} GiB per PC left for the OS and cache, "
          f"one sequence, push chain client -> PC1 -> ... -> PCn -> client; tok/s bound = blocks read at the full "
          f"bandwidth; tok/s meas. = float32 blocks at the efficiency measured for a block like theirs, times the "
          f"measured time ratio to float32 of each precision (the byte ratio where not measured): "
          + "; ".join(f"{name} eff. {m.efficiency:.2f}" + "".join(f", {p} x{r:.2f}" for p, r in m.x_fp32.items())
                      for name, m in measured.items()))
    print(f"{'model':16} {'prec':5} {'PC':>6} {'block GiB':>9} {'read MB':>8} {'blocks/PC':>9} {'PCs':>4} "
          f"{'ms bound':>8} {'tok/s bound 2|20ms':>18} {'ms meas.':>8} {'tok/s meas. 2|20ms':>18}")
    for name, config in published_configs().items():
        bound = plan_rows(name, config, bandwidth_gbps)
        slower = plan_rows(name, config, bandwidth_gbps, measured[name])
        for r, m in zip(bound, slower):
            speeds = " | ".join(f"{s:.1f}" if s else "-" for s in r["tokens_per_s"])
            slow = " | ".join(f"{s:.1f}" if s else "-" for s in m["tokens_per_s"])
            print(f"{r['model']:16} {r['precision']:5} {r['ram_gib']:>4}GB {r['block_gib']:9.2f} {r['read_mb']:8.0f} "
                  f"{r['blocks_per_pc'] or 'none':>9} {r['pcs'] or '-':>4} {r['compute_ms']:8.0f} {speeds:>18} "
                  f"{m['compute_ms']:8.0f} {slow:>18}")


def print_model_facts() -> None:
    from potluck.core.model.families import family_for
    from potluck.core.model.families.shapes import active_parameters, total_parameters

    print("\npublished configs (parameters)")
    for name, config in published_configs().items():
        family = family_for(config)
        weights = [family.block_weights(config, i) for i in range(config.num_hidden_layers)]
        table = config.vocab_size * config.hidden_size  # the embedding, and the untied LM head as much again
        total = sum(total_parameters(w) for w in weights) + 2 * table + config.hidden_size
        read = sum(active_parameters(w) for w in weights)
        print(f"  {name:16} {config.num_hidden_layers} blocks, {total / 1e9:.1f} B in all; per token the blocks read "
              f"{read / 1e9:.2f} B and the LM head {table / 1e9:.2f} B (the input embedding is a row lookup); a block "
              f"holds {total_parameters(weights[0]) / 1e9:.3f} B, a token reads {active_parameters(weights[0]) / 1e9:.3f} B of it")


# ---- measurements ------------------------------------------------------------------------------------------------
def measure_bandwidth_gbps(repeats: int = 7) -> float:
    """Read bandwidth: a sum over a 1 GiB float32 tensor (all of torch's threads), median of `repeats`."""
    import torch

    data = torch.ones(GIB // 4)
    data.sum()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - began)
    return GIB / statistics.median(times) / 1e9


def random_block(config, dtype):
    import torch

    from potluck.core.model.families import family_for
    from potluck.core.model.families.base import BlockStack

    family = family_for(config)
    config._attn_implementation = family.attention_implementation
    layer = family.build_layer(config, 0)
    with torch.no_grad():
        for param in layer.parameters():
            param.normal_(0.0, 0.02)
    return BlockStack(family, config, 0, 1, torch.nn.ModuleList([layer.to(dtype).eval().requires_grad_(False)]))


def decode_ms(stack, dtype, steps: int) -> float:
    import torch

    torch.manual_seed(0)
    cache, hidden = stack.new_cache(), stack.config.hidden_size
    times = []
    with torch.inference_mode():
        stack(torch.randn(1, CONTEXT_TOKENS, hidden, dtype=dtype), cache)
        for _ in range(steps + 2):
            step = torch.randn(1, 1, hidden, dtype=dtype)  # other tokens route to other experts
            began = time.perf_counter()
            stack(step, cache)
            times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times[2:])


def quantized_block(config, precision: str):
    """A random float32 block quantized as load_blocks(quant=precision) does it: linear layers, then experts."""
    import torch

    from potluck.core.model.quant.modules import quantize_module

    stack = random_block(config, torch.float32)
    for layer in stack.layers:
        quantize_module(layer, precision)
        stack.family.quantize_experts(layer, precision)
    return stack


def variants(moe: bool, quick: bool) -> list[tuple[str, str | None, tuple]]:
    """(compute name, quantized precision or None, expert kernels) to measure for a block."""
    kernels = (("grouped_mm",) if quick else ("grouped_mm", "eager")) if moe else ("-",)
    rows = [("float32", None, kernels)] + ([] if quick else [("bfloat16", None, kernels[:1])])
    return rows + [(f"float32+{p}", p, ("potluck",) if moe else ("-",)) for p in ("int8", "int4")]


def measure_blocks(steps: int, reps: int, quick: bool = False, only: str = "", wide: bool = False) -> list[dict]:
    """For each bench block, its variants take turns over `reps` rounds (so that a busy moment of a shared machine
    hits all of them); the bandwidth is measured at the start of each round. Per variant: the median over rounds of
    its per-step median time, of its ratio to the round's float32 time (x fp32) and of its rate / the bandwidth."""
    import torch

    from potluck.core.model.families.shapes import weight_bytes
    from potluck.core.model.quant.format import quantized_bytes

    rows = []
    for name, config in bench_configs(wide).items():
        if only and only.lower() not in name.lower():
            continue
        candidates = []
        for compute, precision, kernels in variants(hasattr(config, "num_experts_per_tok"), quick):
            dtype = getattr(torch, compute.split("+")[0])
            began = time.perf_counter()
            stack = quantized_block(config, precision) if precision else random_block(config, dtype)
            built_s = time.perf_counter() - began
            weights = stack.family.block_weights(config, 0)
            size = dict(matrix_bytes=lambda o, i, p=precision: quantized_bytes(o, i, p)) if precision else {}
            held = weight_bytes(weights, dtype.itemsize, **size)
            read = weight_bytes(weights, dtype.itemsize, active_only=True, **size)
            candidates += [dict(config=name, dtype=compute, experts=impl, stack=stack, torch_dtype=dtype, held=held,
                                read=read, built_s=built_s, ms=[], x=[], ratios=[]) for impl in kernels]
        for _ in range(reps):
            bandwidth = measure_bandwidth_gbps(3)
            for c in candidates:  # the first one is float32 with the default expert kernel: the baseline
                config._experts_implementation = c["experts"] if c["experts"] in ("grouped_mm", "eager") else "grouped_mm"
                c["ms"].append(decode_ms(c["stack"], c["torch_dtype"], steps))
                c["x"].append(c["ms"][-1] / candidates[0]["ms"][-1])
                c["ratios"].append(c["read"] / (c["ms"][-1] / 1000) / 1e9 / bandwidth)
        for c in candidates:
            row = dict(config=name, dtype=c["dtype"], experts=c["experts"], held_mb=c["held"] / 1e6,
                       read_mb=c["read"] / 1e6, ms=statistics.median(c["ms"]), x_fp32=statistics.median(c["x"]),
                       efficiency=statistics.median(c["ratios"]), built_s=c["built_s"])
            row["gbps"] = c["read"] / (row["ms"] / 1000) / 1e9
            rows.append(row)
            print(f"  {format_row(row)}", file=sys.stderr, flush=True)
        del candidates
    return rows


def format_row(r: dict) -> str:
    return (f"{r['config']:26} {r['dtype']:12} {r['experts']:10} {r['held_mb']:8.0f} {r['read_mb']:8.1f} {r['ms']:8.2f} "
            f"{r['x_fp32']:6.2f} {r['gbps']:9.1f} {r['efficiency']:6.2f}   (built in {r['built_s']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan-only", action="store_true", help="skip the measurements")
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps and one repetition; float32 (grouped_mm), int8 and int4 only")
    parser.add_argument("--wide", action="store_true", help="also a block of gpt-oss-120b's own width (+1-2 minutes)")
    parser.add_argument("--block", default="", help="measure only the bench blocks whose name contains this")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions of each measurement, medians shown (default 3; 1 with --quick)")
    parser.add_argument("--bandwidth-gbps", type=float, default=40.0, help="memory bandwidth a PC reads weights at")
    args = parser.parse_args(argv)
    common.set_thread_environment()
    measured = {name: Measured() for name in BENCH_BLOCK_OF}
    if not args.plan_only:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        info = common.machine_info()
        print(common.machine_line(info))
        print(f"memory read bandwidth (sum over 1 GiB, {info['torch_threads']} threads): {measure_bandwidth_gbps():.1f} GB/s")
        print(f"one block, one token after {CONTEXT_TOKENS} of context (ms: median); x fp32 = ms / the float32 block's; "
              f"GB/s eff. = bytes read / time; x bw = that / the bandwidth measured just before")
        print(f"  {'block':26} {'compute':12} {'experts':10} {'held MB':>8} {'read MB':>8} {'ms':>8} {'x fp32':>6} "
              f"{'GB/s eff.':>9} {'x bw':>6}")
        reps = args.reps or (1 if args.quick else 3)
        rows = measure_blocks(8 if args.quick else 24, reps, args.quick, args.block, args.wide)
        for r in rows:
            print(f"  {format_row(r)}")
        for name, blocks in BENCH_BLOCK_OF.items():  # float32 with the default expert kernel, and the others' ratios
            block = next((b for b in blocks if any(r["config"] == b for r in rows)), None)
            mine = [r for r in rows if r["config"] == block and r["experts"] in ("-", "grouped_mm", "potluck")]
            if mine:
                measured[name].efficiency = next(r["efficiency"] for r in mine if r["dtype"] == "float32")
                measured[name].x_fp32 = {p: r["x_fp32"] for p in PRECISIONS for r in mine if r["dtype"] == MEASURED_AS[p]}
    print_model_facts()
    print_plan(args.bandwidth_gbps, measured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
