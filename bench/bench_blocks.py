"""What one block costs per decoded token, dense and mixture-of-experts, and what that means for a 120B swarm.

    python bench/bench_blocks.py                  # measure (about 2-4 minutes), then print the plan
    python bench/bench_blocks.py --plan-only      # only the plan, at --bandwidth-gbps (default 40)
    python bench/bench_blocks.py --quick          # fewer steps, float32 only

Measured here: the machine's memory read bandwidth (sum over a 1 GiB float32 tensor), and the single-token decode
time of one block at hidden 1024 with 256 tokens of context, for a dense Llama-like block and for gpt-oss-like and
Qwen3-MoE-like blocks (the published models' expert counts, top-k and width ratios, scaled to hidden 1024), in
float32 and bfloat16, with transformers' default expert kernel (grouped_mm) and its eager loop. Each figure is the
median of the per-step times. "GB/s eff." is the bytes one token reads in the block (attention + router + top-k
experts) divided by that time: how close a block comes to the bandwidth bound the plan assumes.

The plan sizes gpt-oss-120b, Qwen3-235B-A22B and Llama 3.1 70B (numbers from their published config.json files)
for swarms of 16, 32 and 64 GiB PCs, leaving 4 GiB per PC for the OS and the attention cache, at bf16, int8
(8.5 bits per weight with scales) and int4 (4.5 bits): PCs needed, blocks per PC, and tokens/s for one sequence =
1 / (bytes all blocks read per token / bandwidth + LM head read on the client / bandwidth + (PCs + 1) one-way hops).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common

GIB = 2**30
OS_AND_CACHE_GIB = 4  # left free on every PC
PC_RAM_GIB = (16, 32, 64)
PRECISION_BITS = {"bf16": 16.0, "int8": 8.5, "int4": 4.5}  # per matrix weight, scales included; vectors stay bf16
LINK_ONE_WAY_MS = (2.0, 20.0)
CONTEXT_TOKENS = 256
# the bench block shaped like each published model (see bench_configs)
BENCH_BLOCK_OF = {"gpt-oss-120b": "gpt-oss-like 128e top-4", "Qwen3-235B-A22B": "Qwen3-MoE-like 128e top-8",
                  "Llama-3.1-70B": "dense (Llama-like)"}


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


def bench_configs() -> dict:
    """Blocks at hidden 1024 shaped like the published models (heads of 64, 4 key-value heads)."""
    from transformers import GptOssConfig, LlamaConfig, Qwen3MoeConfig

    attention = dict(hidden_size=1024, num_attention_heads=16, num_key_value_heads=4, head_dim=64, num_hidden_layers=1,
                     vocab_size=384)
    return {
        "dense (Llama-like)": LlamaConfig(**attention, intermediate_size=3584),  # 70B's ratio 28672 / 8192
        "gpt-oss-like 128e top-4": GptOssConfig(**attention, intermediate_size=1024, num_local_experts=128,
                                                num_experts_per_tok=4, sliding_window=128, layer_types=["full_attention"]),
        "Qwen3-MoE-like 128e top-8": Qwen3MoeConfig(**attention, intermediate_size=3072, moe_intermediate_size=384,
                                                    num_experts=128, num_experts_per_tok=8),
    }


# ---- the plan (pure arithmetic) ----------------------------------------------------------------------------------
def block_bytes(config, bits: float, active_only: bool = False) -> float:
    """Bytes of the largest block at `bits` per matrix weight (vectors at 16 bits)."""
    from potluck.core.model.families import family_for
    from potluck.core.model.families.shapes import weight_bytes

    family = family_for(config)
    return max(weight_bytes(family.block_weights(config, i), 2, active_only=active_only,
                            matrix_bytes=lambda out, inp: math.ceil(out * inp * bits / 8))
               for i in range(config.num_hidden_layers))


def plan_rows(name: str, config, bandwidth_gbps: float, efficiency: float = 1.0) -> list[dict]:
    """One row per precision and PC size. Blocks read their active bytes at `efficiency` x the bandwidth; the
    client's bf16 LM head at the full bandwidth."""
    head_bytes = config.vocab_size * config.hidden_size * 2  # the client's LM head, bf16, read once per token
    rows = []
    for precision, bits in PRECISION_BITS.items():
        held, read = block_bytes(config, bits), block_bytes(config, bits, active_only=True)
        for ram in PC_RAM_GIB:
            per_pc = int((ram - OS_AND_CACHE_GIB) * GIB // held)
            pcs = math.ceil(config.num_hidden_layers / per_pc) if per_pc else None
            compute_ms = 1000 * (config.num_hidden_layers * read / efficiency + head_bytes) / (bandwidth_gbps * 1e9)
            speeds = [1000 / (compute_ms + (pcs + 1) * link) if pcs else None for link in LINK_ONE_WAY_MS]
            rows.append(dict(model=name, precision=precision, ram_gib=ram, block_gib=held / GIB, read_mb=read / 1e6,
                             blocks_per_pc=per_pc, pcs=pcs, compute_ms=compute_ms, tokens_per_s=speeds))
    return rows


def print_plan(bandwidth_gbps: float, efficiency: dict[str, float]) -> None:
    """`efficiency`: published model -> its bench block's effective rate / bandwidth (1.0 = bandwidth-bound)."""
    print(f"\nplan at {bandwidth_gbps:g} GB/s per PC, {OS_AND_CACHE_GIB} GiB per PC left for the OS and cache, "
          f"one sequence, push chain client -> PC1 -> ... -> PCn -> client; tok/s bound = blocks read at the full "
          f"bandwidth, tok/s meas. = at the efficiency measured for a block like theirs: "
          + ", ".join(f"{name} {ratio:.2f}" for name, ratio in efficiency.items()))
    print(f"{'model':16} {'prec':5} {'PC':>6} {'block GiB':>9} {'read MB':>8} {'blocks/PC':>9} {'PCs':>4} "
          f"{'ms bound':>8} {'tok/s bound 2|20ms':>18} {'ms meas.':>8} {'tok/s meas. 2|20ms':>18}")
    for name, config in published_configs().items():
        bound = plan_rows(name, config, bandwidth_gbps)
        measured = plan_rows(name, config, bandwidth_gbps, efficiency[name])
        for r, m in zip(bound, measured):
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


def measure_blocks(dtypes, steps: int, reps: int) -> list[dict]:
    """Median over `reps` runs of each block's per-step median, with the bandwidth measured right before each."""
    import torch

    from potluck.core.model.families.shapes import weight_bytes

    rows = []
    for name, config in bench_configs().items():
        moe = hasattr(config, "num_experts_per_tok")
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            stack = random_block(config, dtype)
            weights = stack.family.block_weights(config, 0)
            held = weight_bytes(weights, dtype.itemsize)
            read = weight_bytes(weights, dtype.itemsize, active_only=True)
            for impl in (("grouped_mm", "eager") if moe else (None,)):
                config._experts_implementation = impl
                ms, ratios = [], []
                for _ in range(reps):
                    bandwidth = measure_bandwidth_gbps(3)
                    ms.append(decode_ms(stack, dtype, steps))
                    ratios.append(read / (ms[-1] / 1000) / 1e9 / bandwidth)
                row = dict(config=name, dtype=dtype_name, experts=impl or "-",
                           held_mb=held / 1e6, read_mb=read / 1e6, ms=statistics.median(ms),
                           efficiency=statistics.median(ratios))
                row["gbps"] = read / (row["ms"] / 1000) / 1e9
                rows.append(row)
                print(f"  {format_row(row)}", file=sys.stderr, flush=True)
            del stack
    return rows


def format_row(r: dict) -> str:
    return (f"{r['config']:26} {r['dtype']:8} {r['experts']:10} {r['held_mb']:8.0f} {r['read_mb']:8.1f} {r['ms']:8.2f} "
            f"{r['gbps']:9.1f} {r['efficiency']:8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan-only", action="store_true", help="skip the measurements")
    parser.add_argument("--quick", action="store_true", help="fewer steps and one repetition, float32 only")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (medians are shown)")
    parser.add_argument("--bandwidth-gbps", type=float, default=40.0, help="memory bandwidth a PC reads weights at")
    args = parser.parse_args(argv)
    common.set_thread_environment()
    efficiency = dict.fromkeys(BENCH_BLOCK_OF, 1.0)
    if not args.plan_only:
        info = common.machine_info()
        print(common.machine_line(info))
        print(f"memory read bandwidth (sum over 1 GiB, {info['torch_threads']} threads): {measure_bandwidth_gbps():.1f} GB/s")
        print(f"one block, one token after {CONTEXT_TOKENS} of context (ms: median); GB/s eff. = bytes read / time; "
              f"x bw = that / the bandwidth measured just before")
        print(f"  {'block':26} {'dtype':8} {'experts':10} {'held MB':>8} {'read MB':>8} {'ms':>8} {'GB/s eff.':>9} {'x bw':>8}")
        rows = measure_blocks(("float32",) if args.quick else ("float32", "bfloat16"), 8 if args.quick else 24,
                              1 if args.quick else args.reps)
        for r in rows:
            print(f"  {format_row(r)}")
        for name, block in BENCH_BLOCK_OF.items():  # the default expert kernel, float32 (bf16 is slower on this CPU)
            efficiency[name] = next(r["efficiency"] for r in rows if r["config"] == block and r["dtype"] == "float32"
                                    and r["experts"] in ("-", "grouped_mm"))
    print_model_facts()
    print_plan(args.bandwidth_gbps, efficiency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
