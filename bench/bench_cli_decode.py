"""Decode speed as a user of the command line sees it: `potluck generate` through 2 servers (push), timed from
outside, against plain transformers `generate` in the same minutes.

    python bench/bench_cli_decode.py            # tiny Llama (hidden 256 x 8 blocks), 5 repetitions (~3 min)
    python bench/bench_cli_decode.py --model mid --reps 3

Outside: per token = (wall time of a run with 264 new tokens - wall time of a run with 8) / 256, so process start,
model loading, connecting and prefill cancel out and only the decode loop is left (the reply's detokenising,
printing, the route, every hop); a cold process's start still varies by a few hundred milliseconds, which the 256
tokens spread thin. Inside: the median step time `potluck generate --json` reports for the long run. The swarm
side runs `potluck generate --json` as a fresh process each time; the local side runs transformers' own
`model.generate` (greedy, the cache on) in this process, 264 and 8 tokens the same way. The two take turns, so a
change in the machine's load hits both. Every swarm run's tokens are checked against the same model run locally
(Potluck's reference, which the tests hold equal to transformers; transformers' `min_new_tokens` forbids the end
of sequence, so its tokens may differ where that token wins).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common

LONG, SHORT = 264, 8
PROMPT = [5, 17, 33, 2, 40, 99, 120, 7]


def cli_run(model: str, peers: list[str], new_tokens: int) -> tuple[float, dict]:
    began = time.perf_counter()
    done = common.potluck("generate", "--model", model, "--initial-peers", *peers, "--prompt-ids",
                          ",".join(map(str, PROMPT)), "--max-new-tokens", str(new_tokens), "--no-eos", "--json")
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def local_run(model, new_tokens: int) -> tuple[float, list[int]]:
    import torch

    began = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(torch.tensor([PROMPT]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False)
    return time.perf_counter() - began, out[0, len(PROMPT):].tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(common.MODELS), default="tiny")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    common.set_thread_environment()
    import torch
    from transformers import AutoModelForCausalLM

    from potluck.core.client.local import LocalModelForCausalLM
    from potluck.core.localswarm import LocalSwarm, split_blocks

    with tempfile.TemporaryDirectory() as root:
        model_dir = common.build_model(args.model, Path(root))
        local = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        reference = LocalModelForCausalLM.from_pretrained(str(model_dir)).generate(
            PROMPT, max_new_tokens=LONG, eos_token_id=None).token_ids
        _hidden, layers = common.MODELS[args.model]
        with LocalSwarm(str(model_dir), split_blocks(layers, 2)) as swarm:
            cli_run(str(model_dir), swarm.initial_peers, SHORT)  # warm-up: the OS's file cache, the servers
            local_run(local, SHORT)
            swarm_ms, inside_ms, local_ms, exact = [], [], [], True
            for rep in range(args.reps):
                long_s, out = cli_run(str(model_dir), swarm.initial_peers, LONG)
                short_s, _ = cli_run(str(model_dir), swarm.initial_peers, SHORT)
                local_long, _ = local_run(local, LONG)
                local_short, _ = local_run(local, SHORT)
                exact = exact and out["token_ids"] == reference
                swarm_ms.append((long_s - short_s) / (LONG - SHORT) * 1000)
                inside_ms.append(out["step_seconds_median"] * 1000)
                local_ms.append((local_long - local_short) / (LONG - SHORT) * 1000)
                print(f"rep {rep + 1}: potluck generate {swarm_ms[-1]:.2f} ms/token outside, {inside_ms[-1]:.2f} "
                      f"inside; transformers {local_ms[-1]:.2f} ms/token ({swarm_ms[-1] / local_ms[-1]:.2f}×, "
                      f"{inside_ms[-1] / local_ms[-1]:.2f}×)", file=sys.stderr)
    for name, ms in (("outside", swarm_ms), ("inside", inside_ms)):
        ratios = [s / local for s, local in zip(ms, local_ms)]
        print(f"{args.model}, 2 servers, push, timed {name}: potluck generate {statistics.median(ms):.2f} ms/token, "
              f"transformers generate {statistics.median(local_ms):.2f} ms/token; ratio per repetition "
              f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f}×, worst "
              f"{max(ratios):.2f}×)")
    print(f"tokens identical to the local model in every run: {exact}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
