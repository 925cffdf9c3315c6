"""Cross-session batching: aggregate decode speed with 1, 4 and 8 conversations at once, batching on and off.

    python bench/bench_batching.py              # mid model (hidden 1024 x 16 blocks) and SmolLM2, 2 servers
    python bench/bench_batching.py --quick

Two real `potluck serve` processes on loopback (the model's blocks in two halves), started once with batching and
once with `--no-batching` (today's servers: every step alone). N client sessions (threads of one client process)
each generate the same number of greedy tokens at once; aggregate tokens/s = all their new tokens / the wall time
from the first step to the last. Each run's tokens are checked against the same prompts run one at a time. The
single-session row compares one conversation's decode step with batching on and off (the lone path must cost
nothing extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common


def run_concurrent(client, prompts: list[list[int]], new_tokens: int) -> tuple[float, list[list[int]]]:
    results: list = [None] * len(prompts)
    start = threading.Barrier(len(prompts) + 1)

    def one(i: int) -> None:
        start.wait()
        results[i] = client.generate(prompts[i], max_new_tokens=new_tokens, eos_token_id=None).token_ids

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return len(prompts) * new_tokens / (time.perf_counter() - began), results


def bench_model(model: str, num_blocks: int, vocab: int, counts: list[int], new_tokens: int, reps: int, echo) -> dict:
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm, split_blocks

    prompts = [common.prompt_ids(8 + 3 * i, vocab, seed=i) for i in range(max(counts))]
    rows = {}
    for batching in (True, False):
        extra = [] if batching else ["--no-batching"]
        with LocalSwarm(model, split_blocks(num_blocks, 2), dtype="float32", extra_args=extra) as swarm:
            client = DistributedModelForCausalLM.from_pretrained(model, initial_peers=swarm.initial_peers, timeout=120)
            try:
                alone = [client.generate(p, max_new_tokens=new_tokens, eos_token_id=None).token_ids for p in prompts]
                single = []
                for _ in range(reps):
                    result = client.generate(prompts[0], max_new_tokens=new_tokens, eos_token_id=None)
                    single.append(statistics.median(result.step_seconds) * 1000)
                for n in counts:
                    rates, exact = [], True
                    for _ in range(reps):
                        rate, tokens = run_concurrent(client, prompts[:n], new_tokens)
                        rates.append(rate)
                        exact = exact and tokens == alone[:n]
                    rows[(batching, n)] = {"tokens_per_second": statistics.median(rates), "exact": exact}
                rows[(batching, "single_ms")] = statistics.median(single)
            finally:
                client.shutdown()
        echo(f"  batching {'on' if batching else 'off'}: " + ", ".join(
            f"{n}: {rows[(batching, n)]['tokens_per_second']:.1f} tokens/s" for n in counts)
            + f"; one session {rows[(batching, 'single_ms')]:.1f} ms a step")
    base = rows[(True, 1)]["tokens_per_second"]
    return {
        "aggregate": {str(n): {"on": rows[(True, n)]["tokens_per_second"], "off": rows[(False, n)]["tokens_per_second"],
                               "on_vs_one_session": rows[(True, n)]["tokens_per_second"] / base,
                               "exact": rows[(True, n)]["exact"] and rows[(False, n)]["exact"]} for n in counts},
        "single_session_ms": {"on": rows[(True, "single_ms")], "off": rows[(False, "single_ms")],
                              "ratio": rows[(True, "single_ms")] / rows[(False, "single_ms")]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from potluck.core.model.builtin import builtin_model_path
    from potluck.core.model.tiny import make_tiny_model

    def echo(text: str) -> None:
        print(text, flush=True)

    echo(common.machine_line(common.machine_info()))
    counts, tokens, reps = ([1, 4], 8, 1) if args.quick else ([1, 4, 8], 32, 3)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        mid = str(make_tiny_model("llama", Path(tmp) / "mid", layers=16, hidden=1024, seed=1, shard_size="200MB"))
        echo("mid model (hidden 1024 x 16 blocks), 2 servers")
        report["mid"] = bench_model(mid, 16, 384, counts, tokens, reps, echo)
    echo("SmolLM2-135M-Instruct, 2 servers")
    report["smollm2"] = bench_model(str(builtin_model_path()), 30, 49152, counts, tokens, reps, echo)
    print("| model | sessions | aggregate tokens/s, batching on (off) | × one session | identical |")
    print("| --- | --- | --- | --- | --- |")
    for name, label in (("mid", "mid (1024 × 16)"), ("smollm2", "SmolLM2-135M")):
        for n, row in report[name]["aggregate"].items():
            print(f"| {label} | {n} | {row['on']:.1f} ({row['off']:.1f}) | {row['on_vs_one_session']:.2f} | {row['exact']} |")
        single = report[name]["single_session_ms"]
        print(f"| {label} | one session's step | {single['on']:.1f} ms ({single['off']:.1f} ms) | {single['ratio']:.2f} | |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
