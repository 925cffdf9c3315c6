"""Potluck under link latency, and how long a generation stalls when a serving replica is killed.

    python bench/bench_network.py                   # 2 ms and 20 ms links, 5 kills (a few minutes)
    python bench/bench_network.py --quick           # smoke run
    python bench/bench_network.py --delays 0,5,40 --kills 9 --json out.json

Link delay. Three real `potluck serve` processes (tiny Llama, blocks split in three) and the client in this
process each listen on 127.0.0.1 but announce the port of a delaying relay (bench/linkdelay.py, one separate
process), so whoever dials whom, every link crosses exactly one relay and is delayed D ms each way. With push a
token's hidden state crosses 4 links in a row (client -> A -> B -> C -> client; the servers' acknowledgements
to the client travel in parallel and are not waited for), so the floor per token is

    floor = local compute per token + 4 x D

where local compute is the whole model decoding in this process (as in bench_engine.py), measured in repetitions
alternating with the swarm's. A 0 ms row (relays in place, no delay) shows the relays' own cost. Bytes per token per
hop are counted twice: TCP bytes through the relays (libp2p framing and background DHT traffic included) and
application frames (as in bench_engine.py).

Fail-over (loopback, no relays). Four servers: two replicas of each half of the model. The client is pinned to one
replica per half (through its latency table, as the tests do); a third of the way into a generation the route's
server for one half (alternating) is killed with SIGKILL, together with its DHT process and p2pd (a PC that
vanishes). stall = the longest gap between consecutive tokens of that generation minus their median. A fresh
replica is started before the next kill. Killed peers keep their DHT records until they expire (30 s), so the
client is told they are far away, to measure one fail-over at a time; the output is checked against the local
model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common

LINKS_PER_TOKEN = 4  # client -> A -> B -> C -> client, with push through 3 servers


@dataclass(frozen=True)
class Plan:
    model: str = "tiny"
    reps: int = 3
    prompt_tokens: int = 16
    new_tokens: int = 64
    delays_ms: tuple[float, ...] = (0.0, 2.0, 20.0)
    kills: int = 5
    timeout_seconds: float = 30.0  # per remote call in the delay runs
    failover_timeout_seconds: float = 5.0  # per remote call in the fail-over runs (a stalled server is given up after this)


QUICK = Plan(reps=2, new_tokens=24, kills=2)


class RelayProcess:
    """bench/linkdelay.py as a child process relaying to `targets` (local ports); dies when our stdin pipe closes."""

    def __init__(self, targets: list[int], delay_ms: float = 0.0):
        args = [sys.executable, str(Path(__file__).with_name("linkdelay.py")), "--delay-ms", str(delay_ms)]
        for port in targets:
            args += ["--map", f"0:127.0.0.1:{port}"]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ports: list[int] = []
        self._lock = threading.Lock()
        while (line := self.process.stdout.readline().strip()) != "ready":
            if not line:
                self.stop()
                raise RuntimeError("the delaying relay did not start")
            self.ports.append(int(line.split()[1].rsplit(":", 1)[1]))  # "listen 127.0.0.1:PORT -> HOST:PORT"

    def command(self, line: str) -> str:
        with self._lock:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            return self.process.stdout.readline().strip()

    def set_delay(self, delay_ms: float) -> None:
        if self.command(f"delay {delay_ms}") != "ok":
            raise RuntimeError("the relay refused the delay")

    def stats(self) -> list[dict]:
        return json.loads(self.command("stats"))

    def stop(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(5)
        except Exception:  # not answering: kill it
            self.process.kill()
            self.process.wait(5)


def delayed_swarm_runs(model_dir: Path, plan: Plan, echo) -> list[dict]:
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm, split_blocks
    from potluck.core.swarm.dht import DHTOptions, start_dht

    local = common.LocalModel(model_dir)
    prompt = common.prompt_ids(plan.prompt_tokens, local.model.config.vocab_size)
    layers = local.model.config.num_hidden_layers
    ports = [common.free_port() for _ in range(4)]  # 3 servers and the client
    relay = RelayProcess(ports)
    swarm = LocalSwarm(str(model_dir), [])
    dht = client = None
    rows = []
    try:
        for (start, end), port, announced in zip(split_blocks(layers, 3), ports, relay.ports):
            swarm.add_server(start, end, "--port", str(port), "--announce-port", str(announced))
        echo(f"3 servers behind relays: {', '.join(s.maddrs[0] for s in swarm.servers)}")
        dht = start_dht(DHTOptions(initial_peers=tuple(swarm.initial_peers), client_mode=True, port=ports[3],
                                   announce_port=relay.ports[3]))
        client = DistributedModelForCausalLM.from_pretrained(str(model_dir), dht=dht, push=True, timeout=plan.timeout_seconds)
        local.decode(prompt, plan.new_tokens)  # warm-up
        for delay in plan.delays_ms:
            echo(f"one-way delay {delay:g} ms on every link")
            relay.set_delay(delay)
            common.swarm_decode(client, prompt, 8)  # warm-up at this delay
            local_ms, swarm_ms, exact = [], [], True
            held_before = relay.stats()
            for _ in range(plan.reps):
                tokens, gaps = local.decode(prompt, plan.new_tokens)
                local_ms.append(common.median(gaps) * 1000)
                result, gaps = common.swarm_decode(client, prompt, plan.new_tokens)
                swarm_ms.append(common.median(gaps) * 1000)
                exact = exact and result.token_ids == tokens
            held = _mean_held_ms(held_before, relay.stats())
            counted = client.loop.run(common.counted_decode(client, prompt, plan.new_tokens, _snapshot(client, swarm, relay)), timeout=600)
            tcp = counted["relay_bytes"] / (counted["steps"] * LINKS_PER_TOKEN)
            app = (counted["client_sent"] + counted["servers_up"]) / (counted["steps"] * counted["hops"])
            floor = common.median(local_ms) + LINKS_PER_TOKEN * delay
            rows.append({"delay_ms": delay, "decode_ms": common.median(swarm_ms), "floor_ms": floor,
                         "local_ms": common.median(local_ms), "held_ms": held, "tcp_bytes_per_token_hop": tcp,
                         "app_bytes_per_token_hop": app, "exact": exact, "decode_rep_ms": swarm_ms,
                         "local_rep_ms": local_ms, "counted": counted})
    finally:
        if client is not None:
            client.shutdown()
        if dht is not None:
            dht.shutdown()
        common.stop_swarm(swarm)
        relay.stop()
    return rows


def _snapshot(client, swarm, relay: RelayProcess):
    async def snapshot(session):
        by_link = {f"relay_link{i}": r["bytes_forward"] + r["bytes_backward"] for i, r in enumerate(relay.stats())}
        return {**await common.app_bytes(client, swarm.servers, session), **by_link, "relay_bytes": sum(by_link.values())}

    return snapshot


def _mean_held_ms(before: list[dict], after: list[dict]) -> float:
    """The mean time the relays really held a chunk since `before` (sleeps overshoot by up to a millisecond)."""
    chunks = sum(a["chunks"] - b["chunks"] for a, b in zip(after, before))
    held = sum(a["held_ms_total"] - b["held_ms_total"] for a, b in zip(after, before))
    return held / chunks if chunks else float("nan")


def failover_runs(model_dir: Path, plan: Plan, echo) -> list[dict]:
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm

    local = common.LocalModel(model_dir)
    prompt = common.prompt_ids(plan.prompt_tokens, local.model.config.vocab_size)
    layers = local.model.config.num_hidden_layers
    halves = [(0, layers // 2), (layers // 2, layers)]
    reference, _ = local.decode(prompt, plan.new_tokens)
    del local
    swarm = LocalSwarm(str(model_dir), [])
    hosted: dict[int, tuple[int, int]] = {}  # id(server) -> its range
    client = None
    rng = random.Random(7)
    runs = []
    try:
        for half in halves + halves:
            hosted[id(swarm.add_server(*half))] = half
        client = DistributedModelForCausalLM.from_pretrained(str(model_dir), initial_peers=swarm.initial_peers, push=True,
                                                             timeout=plan.failover_timeout_seconds)
        common.swarm_decode(client, prompt, 8)  # warm-up
        dead: set[str] = set()
        for k in range(plan.kills):
            half = halves[k % 2]
            alive = [s for s in swarm.servers if s.process.poll() is None]
            victim = next(s for s in alive if hosted[id(s)] == half)
            client.swarm.pin_latency({**{s.peer_id: 1.0 if s is victim else 40.0 for s in alive},
                                      **{peer: 100_000.0 for peer in dead}})
            kill_at = max(2, plan.new_tokens // 3)

            def on_token(count: int, stamps: list[float], victim=victim, kill_at=kill_at) -> None:
                if count == kill_at:  # land somewhere inside the next step, not only between steps
                    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
                    threading.Timer(rng.uniform(0, common.median(gaps)), common.kill_group, [victim]).start()

            echo(f"kill {k + 1}/{plan.kills}: blocks {half[0]}-{half[1] - 1} on {victim.peer_id[-8:]} after {kill_at} tokens")
            run = {"kill": k + 1, "blocks": list(half), "victim": victim.peer_id}
            try:
                result, gaps = common.swarm_decode(client, prompt, plan.new_tokens, on_token)
                longest, typical = max(gaps), common.median(gaps)
                run.update(stall_ms=(longest - typical) * 1000, longest_gap_ms=longest * 1000, median_step_ms=typical * 1000,
                           exact=result.token_ids == reference, failovers=[dataclasses.asdict(f) for f in result.failovers],
                           tokens=len(result.token_ids))
            except Exception as e:  # reported as seen, not retried: the benchmark measures the engine as it is
                run.update(error=f"{type(e).__name__}: {e}")
            common.kill_group(victim)  # in case the generation ended before the timer fired
            dead.add(victim.peer_id)
            runs.append(run)
            swarm.servers.sort(key=lambda s: s.process.poll() is not None)  # a live server first: new ones bootstrap from it
            hosted[id(swarm.add_server(*half))] = half
    finally:
        if client is not None:
            client.shutdown()
        common.stop_swarm(swarm)
    return runs


def format_delays(delay_rows: list[dict], plan: Plan) -> str:
    lines = [f"link delay: {plan.model} Llama, 3 servers, push, every link through a delaying relay; "
             f"{plan.new_tokens} tokens after a {plan.prompt_tokens}-token prompt, median of {plan.reps} repetition medians"]
    head = (f"{'one-way':>8} {'held':>6} {'ms/token':>9} {'floor':>8} {'over floor':>10} {'x floor':>7} "
            f"{'held floor':>10} {'TCP B/tok/hop':>13} {'app B/tok/hop':>13} {'exact':>5}")
    lines += [head, "-" * len(head)]
    for r in delay_rows:
        lines.append(f"{r['delay_ms']:>6g}ms {r['held_ms']:>6.2f} {r['decode_ms']:>9.2f} {r['floor_ms']:>8.2f} "
                     f"{r['decode_ms'] - r['floor_ms']:>10.2f} {r['decode_ms'] / r['floor_ms']:>7.2f} "
                     f"{r['local_ms'] + LINKS_PER_TOKEN * r['held_ms']:>10.2f} "
                     f"{r['tcp_bytes_per_token_hop']:>13.0f} {r['app_bytes_per_token_hop']:>13.0f} {'yes' if r['exact'] else 'NO':>5}")
    lines.append(f"floor = local compute per token (whole model in this process, alternate repetitions) + {LINKS_PER_TOKEN} links "
                 "x one-way delay.\nheld = the mean delay the relays really applied (their own handling included); "
                 f"held floor = local + {LINKS_PER_TOKEN} x held: what is over it is Potluck's own cost.")
    return "\n".join(lines)


def format_failover(runs: list[dict], plan: Plan) -> str:
    lines = [f"fail-over: {plan.model} Llama on loopback, 2 replicas of each half, kill -9 of the route's server "
             f"(with its DHT process and p2pd) a third of the way into {plan.new_tokens} tokens"]
    head = f"{'kill':>4} {'blocks':>7} {'stall ms':>9} {'longest gap':>11} {'median step':>11} {'replace s':>9} {'exact':>5}"
    lines += [head, "-" * len(head)]
    for r in runs:
        if "error" in r:
            lines.append(f"{r['kill']:>4} {r['blocks'][0]}-{r['blocks'][1] - 1:<5} FAILED: {r['error']}")
            continue
        replace = ",".join(f"{f['seconds']:.3f}" for f in r["failovers"]) or "none"
        lines.append(f"{r['kill']:>4} {r['blocks'][0]:>3}-{r['blocks'][1] - 1:<3} {r['stall_ms']:>9.1f} {r['longest_gap_ms']:>11.1f} "
                     f"{r['median_step_ms']:>11.2f} {replace:>9} {'yes' if r['exact'] else 'NO':>5}")
    stalls = [r["stall_ms"] for r in runs if "stall_ms" in r]
    if stalls:
        lines.append(f"median stall over {len(stalls)} kills: {common.median(stalls):.1f} ms (target: next token within "
                     f"1 s of the kill); replace s = the client's own fail-over time")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer tokens, repetitions and kills")
    parser.add_argument("--model", default="tiny", choices=sorted(common.MODELS))
    parser.add_argument("--delays", default=None, help="one-way delays in ms, comma-separated (default 0,2,20)")
    parser.add_argument("--kills", type=int, default=None, help="fail-over repetitions (default 5; 0 skips fail-over)")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    changes = {"model": args.model}
    if args.delays is not None:
        try:
            changes["delays_ms"] = tuple(float(x) for x in args.delays.split(",") if x.strip())
        except ValueError:
            parser.error("--delays must be numbers of milliseconds, e.g. 0,2,20")
        if any(d < 0 for d in changes["delays_ms"]):
            parser.error("--delays must be >= 0")
    if args.kills is not None:
        if args.kills < 0:
            parser.error("--kills must be >= 0")
        changes["kills"] = args.kills
    return args, Plan(**{**asdict(plan), **changes})


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    common.set_thread_environment()  # before torch loads: the same OpenMP spin as the servers

    def echo(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    info = common.machine_info()
    print(common.machine_line(info), flush=True)
    delay_rows, runs = [], []
    with tempfile.TemporaryDirectory(prefix="potluck-bench-net-") as tmp:
        model_dir = common.build_model(plan.model, Path(tmp))
        if plan.delays_ms:
            delay_rows = delayed_swarm_runs(model_dir, plan, echo)
            print(format_delays(delay_rows, plan) + "\n", flush=True)
        if plan.kills:
            runs = failover_runs(model_dir, plan, echo)
            print(format_failover(runs, plan))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "plan": asdict(plan), "delays": delay_rows, "failover": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
