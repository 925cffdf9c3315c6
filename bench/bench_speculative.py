"""Speculative decoding through a swarm, and how fast a client and a server start.

    python bench/bench_speculative.py            # SmolLM2 through 3 servers: loopback and 20 ms links (~10 min)
    python bench/bench_speculative.py --quick

Speculative rows: the built-in SmolLM2-135M-Instruct served by three real `potluck serve` processes (blocks in
three), asked (a) to copy a paragraph (its reply repeats the prompt: prompt lookup guesses well) and (b) an open
question (little to copy: lookup must not cost anything). Each reply of 64 greedy tokens is generated with
speculative decoding off and with prompt lookup, taking turns; tokens/s is the median of the repetitions, and every
run's tokens are checked identical to the plain run's. With --delay-ms the servers and the client announce the
ports of a user-space relay (bench/linkdelay.py) that holds every chunk D ms each way.

Start rows: `DistributedModelForCausalLM.from_pretrained` to ready (3 servers up; the second and later opens, with
warm caches), the first routed step after it, `potluck generate` of 8 tokens as a cold process (wall clock), and
a server's launch to its `ready` line (tiny model).
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
    from bench.bench_network import RelayProcess
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common
    from bench_network import RelayProcess

PARAGRAPH = ("The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the wick, polished the "
             "great lens until it shone, and wound the clockwork that turned the light. Ships far out at sea saw its "
             "beam sweep across the water every ten seconds, and knew where the rocks were.")
COPY = [{"role": "user", "content": f"Repeat this paragraph exactly, word for word:\n\n{PARAGRAPH}"}]
OPEN = [{"role": "user", "content": "Write a short story about a cat who wants to learn to fly."}]


def speculative_rows(model: str, reps: int, new_tokens: int, delay_ms: float, echo) -> list[dict]:
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm, split_blocks
    from potluck.core.swarm.dht import DHTOptions, start_dht

    ports = [common.free_port() for _ in range(4)]
    relay = RelayProcess(ports)
    relay.set_delay(delay_ms)
    swarm = LocalSwarm(model, [], dtype="auto")
    dht = client = None
    rows = []
    try:
        for (start, end), port, announced in zip(split_blocks(30, 3), ports, relay.ports):
            swarm.add_server(start, end, "--port", str(port), "--announce-port", str(announced))
        dht = start_dht(DHTOptions(initial_peers=tuple(swarm.initial_peers), client_mode=True, port=ports[3],
                                   announce_port=relay.ports[3]))
        client = DistributedModelForCausalLM.from_pretrained(model, dht=dht, timeout=60)
        for name, messages in (("copy a paragraph", COPY), ("open question", OPEN)):
            client.generate(messages=messages, max_new_tokens=4, eos_token_id=None)  # warm-up
            rates = {"off": [], "lookup": []}
            plain, exact, accepted, proposed = None, True, 0, 0
            for _ in range(reps):
                for mode in ("off", "lookup"):
                    result = client.generate(messages=messages, max_new_tokens=new_tokens, eos_token_id=None,
                                             speculative=mode)
                    rates[mode].append(result.tokens_per_second)
                    plain = plain or (result.token_ids if mode == "off" else None)
                    exact = exact and result.token_ids == (plain or result.token_ids)
                    if mode == "lookup":
                        accepted, proposed = accepted + result.draft_accepted, proposed + result.draft_proposed
            off, lookup = statistics.median(rates["off"]), statistics.median(rates["lookup"])
            rows.append({"task": name, "delay_ms": delay_ms, "off_tokens_per_second": off,
                         "lookup_tokens_per_second": lookup, "ratio": lookup / off, "exact": exact,
                         "accepted": accepted, "proposed": proposed})
            echo(f"{name}, {delay_ms:g} ms links: off {off:.1f} tokens/s, lookup {lookup:.1f} ({lookup / off:.2f}×), "
                 f"{accepted}/{proposed} guesses kept, identical: {exact}")
    finally:
        if client is not None:
            client.shutdown()
        if dht is not None:
            dht.shutdown()
        common.stop_swarm(swarm)
        relay.stop()
    return rows


def start_rows(model: str, tiny: str, reps: int, echo) -> dict:
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm, split_blocks

    opens, first_steps, cold, launches = [], [], [], []
    with LocalSwarm(model, split_blocks(30, 3), dtype="auto") as swarm:
        for _ in range(reps + 1):
            began = time.perf_counter()
            client = DistributedModelForCausalLM.from_pretrained(model, initial_peers=swarm.initial_peers)
            opened = time.perf_counter()
            client.generate([1, 2, 3], max_new_tokens=1)
            stepped = time.perf_counter()
            client.shutdown()
            opens.append(opened - began)
            first_steps.append(stepped - opened)
        for _ in range(reps):
            began = time.perf_counter()
            done = common.potluck("generate", "--model", model, "--initial-peers", *swarm.initial_peers, "--prompt", "Hi",
                           "--max-new-tokens", "8", "--no-eos")
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            cold.append(time.perf_counter() - began)
    for _ in range(reps):
        began = time.perf_counter()
        with LocalSwarm(tiny, [(0, 8)]):
            launches.append(time.perf_counter() - began)
    out = {"from_pretrained_seconds": statistics.median(opens[1:]), "first_open_seconds": opens[0],
           "first_step_seconds": statistics.median(first_steps), "cold_generate_seconds": statistics.median(cold),
           "server_ready_seconds": statistics.median(launches)}
    echo(json.dumps({k: round(v, 3) for k, v in out.items()}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--delays", default="0,20", help="one-way link delays to run, ms (default 0,20)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per figure (default 3, 1 with --quick)")
    parser.add_argument("--no-starts", action="store_true", help="only the speculative rows")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from potluck.core.model.builtin import builtin_model_path
    from potluck.core.model.tiny import make_tiny_model

    def echo(text: str) -> None:
        print(text, flush=True)

    echo(common.machine_line(common.machine_info()))
    reps, tokens = (1, 24) if args.quick else (3, 64)
    reps = args.reps or reps
    model = str(builtin_model_path())
    report = {"speculative": []}
    for delay in (float(d) for d in args.delays.split(",") if d):
        report["speculative"] += speculative_rows(model, reps, tokens, delay, echo)
    if not args.no_starts:
        with tempfile.TemporaryDirectory() as tmp:
            tiny = str(make_tiny_model("llama", Path(tmp) / "tiny", layers=8, hidden=256))
            report["starts"] = start_rows(model, tiny, reps, echo)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
