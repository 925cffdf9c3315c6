"""Potluck against the same model run locally with transformers: per-token decode, prefill, bytes on the wire.

    python bench/bench_engine.py                  # tiny and mid Llama, the full run (several minutes)
    python bench/bench_engine.py --quick          # smoke run: tiny only, fewer tokens and repetitions
    python bench/bench_engine.py --models mid --json out.json

For each model (float32 random-weight Llamas: tiny = hidden 256 x 8 layers, mid = hidden 1024 x 16 layers) it
starts 1, 2 and 3 real `potluck serve` processes on loopback (LocalSwarm) and measures a client in this process
with push (client -> A -> B -> client) and, for 2 servers, without push (the client relays every hop). Every
repetition runs the local baseline (transformers, same process) right before the swarm, so a change in the shared
machine's load hits both; each ratio is the swarm's median over repetitions of per-repetition medians divided by
the same statistic of the local repetitions paired with it. On a shared 2-core machine milliseconds are noisy:
compare ratios.

Wire bytes are the real frames on the streams (8-byte frame header + message body), counted by the sender:
the client's connection counters plus each server's `bytes_up` (read with a ping), during the decode steps only,
divided by tokens x hops, where hops = links the hidden state crosses per token (servers + 1 with push,
2 x servers without). libp2p's own framing (Noise, yamux) is not in it; bench_network.py measures TCP bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common

DECODE_TARGET = {"tiny": 1.5, "mid": 1.1}  # per-token decode / local, 2 servers with push (engine issue, item 7)
PREFILL_TARGET = 1.1  # prefill / local
BYTES_TARGET_FACTOR = 1.1  # bytes per token per hop / (hidden x 4 bytes)


@dataclass(frozen=True)
class Plan:
    reps: int = 3  # timed repetitions per figure (after one untimed warm-up per configuration)
    prompt_tokens: int = 16
    new_tokens: int = 64
    prefill_tokens: int = 512
    servers: tuple[int, ...] = (1, 2, 3)
    relay_servers: tuple[int, ...] = (2,)  # also measured without push
    timeout_seconds: float = 120.0  # per remote call: generous, a loaded machine must not trigger fail-over


QUICK = Plan(reps=2, new_tokens=16, prefill_tokens=128, servers=(1, 2), relay_servers=(2,))


@dataclass
class Row:
    model: str
    config: str  # "local", "2 servers push", ...
    servers: int
    push: bool
    decode_ms: float  # median over repetitions of the per-repetition median
    prefill_ms: float
    decode_rep_ms: list[float] = field(default_factory=list)
    prefill_rep_ms: list[float] = field(default_factory=list)
    bytes_per_token_hop: float | None = None
    hops: int | None = None
    bytes_detail: dict = field(default_factory=dict)
    exact: bool | None = None  # greedy tokens equal the local model's
    decode_ratio: float | None = None  # against the local repetitions paired with this row's (same minutes)
    prefill_ratio: float | None = None
    local_decode_rep_ms: list[float] = field(default_factory=list)
    local_prefill_rep_ms: list[float] = field(default_factory=list)


def wire_bytes(client, servers, prompt: list[int], steps: int) -> dict:
    """Frames sent during `steps` decode steps, each counted once by its sender (client or server)."""
    got = client.loop.run(common.counted_decode(client, prompt, steps, lambda session: common.app_bytes(client, servers, session)),
                          timeout=600)
    sent = got["client_sent"] + got["servers_up"]
    received = got["client_received"] + got["servers_down"]  # the same frames counted by their receivers
    return {**got, "bytes_sent_total": sent, "bytes_received_total": received, "bytes_per_token": sent / steps,
            "bytes_per_token_hop": sent / (steps * got["hops"])}


def measure_pairs(local: common.LocalModel, client, swarm, plan: Plan, prompt, long_prompt) -> dict:
    """Alternate local and swarm repetitions, so that a change in the machine's load hits both sides alike."""
    common.swarm_decode(client, prompt, 8)  # warm-up: routes, streams, first-call costs
    client.generate(long_prompt, max_new_tokens=1, eos_token_id=None)
    got = {"local_decode": [], "local_prefill": [], "decode": [], "prefill": [], "exact": True}
    for _ in range(plan.reps):
        local_tokens, gaps = local.decode(prompt, plan.new_tokens)
        got["local_decode"].append(common.median(gaps) * 1000)
        result, gaps = common.swarm_decode(client, prompt, plan.new_tokens)
        got["decode"].append(common.median(gaps) * 1000)
        got["exact"] = got["exact"] and result.token_ids == local_tokens
        got["local_prefill"].append(local.prefill(long_prompt) * 1000)
        got["prefill"].append(client.generate(long_prompt, max_new_tokens=1, eos_token_id=None).prefill_seconds * 1000)
    got["bytes"] = wire_bytes(client, swarm.servers, prompt, plan.new_tokens)
    return got


def bench_model(name: str, plan: Plan, root: Path, echo) -> list[Row]:
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm, split_blocks

    hidden, layers = common.MODELS[name]
    echo(f"[{name}] building a random-weight Llama (hidden {hidden}, {layers} layers, float32)")
    model_dir = common.build_model(name, root)
    local = common.LocalModel(model_dir)
    vocab = local.model.config.vocab_size
    prompt, long_prompt = common.prompt_ids(plan.prompt_tokens, vocab), common.prompt_ids(plan.prefill_tokens, vocab)
    local.decode(prompt, plan.new_tokens), local.prefill(long_prompt)  # warm-up
    rows, local_decode, local_prefill = [], [], []
    for n in plan.servers:
        ranges = split_blocks(layers, n)
        echo(f"[{name}] starting {n} server(s): blocks {', '.join(f'{a}-{b - 1}' for a, b in ranges)}")
        swarm = LocalSwarm(str(model_dir), [])
        try:
            for start, end in ranges:
                swarm.add_server(start, end)
            for push in (True, False) if n in plan.relay_servers else (True,):
                config = f"{n} server{'s' if n > 1 else ''} {'push' if push else 'relay'}"
                echo(f"[{name}] {config}")
                client = DistributedModelForCausalLM.from_pretrained(
                    str(model_dir), initial_peers=swarm.initial_peers, push=push, timeout=plan.timeout_seconds)
                try:
                    got = measure_pairs(local, client, swarm, plan, prompt, long_prompt)
                finally:
                    client.shutdown()
                row = Row(name, config, n, push, common.median(got["decode"]), common.median(got["prefill"]),
                          got["decode"], got["prefill"], got["bytes"]["bytes_per_token_hop"], got["bytes"]["hops"],
                          got["bytes"], got["exact"])
                row.decode_ratio = row.decode_ms / common.median(got["local_decode"])
                row.prefill_ratio = row.prefill_ms / common.median(got["local_prefill"])
                row.local_decode_rep_ms, row.local_prefill_rep_ms = got["local_decode"], got["local_prefill"]
                local_decode += got["local_decode"]
                local_prefill += got["local_prefill"]
                rows.append(row)
        finally:
            common.stop_swarm(swarm)
    base = Row(name, "local transformers", 0, False, common.median(local_decode), common.median(local_prefill),
               local_decode, local_prefill)
    return [base, *rows]


def _verdict(value, target) -> str:
    if value is None or target is None:
        return ""
    return "ok" if value <= target else "MISS"


def format_table(rows: list[Row], plan: Plan) -> str:
    head = (f"{'model':<5} {'config':<19} {'decode ms':>9} {'x local':>7} {'target':>10} {'prefill ms':>10} {'x local':>7} "
            f"{'target':>10} {'B/token/hop':>11} {'hops':>4} {'target B':>13} {'exact':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        hidden = common.MODELS[r.model][0]
        decode_target = DECODE_TARGET[r.model] if r.push and r.servers == 2 else None
        prefill_target = PREFILL_TARGET if r.servers else None
        bytes_target = BYTES_TARGET_FACTOR * hidden * 4 if r.servers else None
        ratio = lambda x: f"{x:.2f}" if x is not None else "1.00"
        lines.append(
            f"{r.model:<5} {r.config:<19} {r.decode_ms:>9.2f} {ratio(r.decode_ratio):>7} "
            f"{(f'<={decode_target} ' + _verdict(r.decode_ratio, decode_target)) if decode_target else '':>10} "
            f"{r.prefill_ms:>10.1f} {ratio(r.prefill_ratio):>7} "
            f"{(f'<={prefill_target} ' + _verdict(r.prefill_ratio, prefill_target)) if prefill_target else '':>10} "
            f"{(f'{r.bytes_per_token_hop:.0f}' if r.bytes_per_token_hop else ''):>11} {(r.hops or ''):>4} "
            f"{(f'<={bytes_target:.0f} ' + _verdict(r.bytes_per_token_hop, bytes_target)) if bytes_target else '':>13} "
            f"{('' if r.exact is None else 'yes' if r.exact else 'NO'):>5}")
    lines.append(
        f"\ndecode: median over {plan.reps} repetitions of the median gap between consecutive tokens "
        f"({plan.new_tokens} new tokens after a {plan.prompt_tokens}-token prompt); prefill: {plan.prefill_tokens}-token "
        "prompt, session open excluded.\nx local: against the local repetitions run alternately with that row's "
        "(the local row pools them all).\n"
        "decode target applies to 2 servers with push (tiny <= 1.5x, mid <= 1.1x); bytes: frames counted by their "
        "sender during decode / (tokens x hops), target 1.1 x hidden x 4 bytes.")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repetitions and tokens, tiny model unless --models")
    parser.add_argument("--models", default=None, help="comma-separated: tiny,mid (default both; tiny with --quick)")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per figure (default 3, 2 with --quick)")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    models = (args.models or ("tiny" if args.quick else "tiny,mid")).split(",")
    unknown = [m for m in models if m not in common.MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(common.MODELS)}")
    plan = QUICK if args.quick else Plan()
    if args.reps is not None:
        if args.reps < 1:
            parser.error("--reps must be at least 1")
        plan = Plan(**{**asdict(plan), "reps": args.reps})
    return args, models, plan


def main(argv: list[str] | None = None) -> int:
    args, models, plan = parse_args(argv)
    common.set_thread_environment()  # before torch loads: the same OpenMP spin as the servers

    def echo(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    info = common.machine_info()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="potluck-bench-") as tmp:
        for name in models:
            rows += bench_model(name, plan, Path(tmp), echo)
    info_end = common.machine_info()["load_average"]
    print(common.machine_line(info) + f"; load average at the end {' '.join(str(x) for x in info_end)}")
    print(format_table(rows, plan))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "plan": asdict(plan), "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
