"""The built-in model (SmolLM2-135M-Instruct, 30 blocks) served by real `potluck serve` processes on 127.0.0.1, and
clients on it: what bench_lookup_default.py, bench_private.py and bench_spot_checks.py share.

With `delay_ms`, every server and the client announce the port of a user-space relay (bench/linkdelay.py, as in
bench_speculative.py) that holds every chunk that long each way, so each link of the chain is that much slower.
Nothing here runs at import; torch and the engine are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import time

try:
    from bench import common
    from bench.bench_network import RelayProcess
except ImportError:  # run as a script: bench/ itself is on sys.path
    import common
    from bench_network import RelayProcess


@contextlib.contextmanager
def builtin_swarm(ranges: list[tuple[int, int]], delay_ms: float = 0.0):
    """Yield `connect(**from_pretrained_kwargs)`, which opens a DistributedModelForCausalLM on servers for `ranges`
    of the built-in model (and is closed on exit)."""
    from potluck.core.client.model import DistributedModelForCausalLM
    from potluck.core.localswarm import LocalSwarm
    from potluck.core.model.builtin import builtin_model_path
    from potluck.core.swarm.dht import DHTOptions, start_dht

    model = str(builtin_model_path())
    ports = [common.free_port() for _ in range(len(ranges) + 1)]
    relay = RelayProcess(ports)
    relay.set_delay(delay_ms)
    swarm = LocalSwarm(model, [], dtype="auto")
    opened: list = []
    dht = None
    try:
        for (start, end), port, announced in zip(ranges, ports, relay.ports):
            swarm.add_server(start, end, "--port", str(port), "--announce-port", str(announced))
        dht = start_dht(DHTOptions(initial_peers=tuple(swarm.initial_peers), client_mode=True, port=ports[-1],
                                   announce_port=relay.ports[-1]))

        def connect(**kwargs):
            client = DistributedModelForCausalLM.from_pretrained(model, dht=dht, timeout=60, **kwargs)
            opened.append(client)
            return client

        yield connect
    finally:
        for client in opened:
            client.shutdown()
        if dht is not None:
            dht.shutdown()
        common.stop_swarm(swarm)
        relay.stop()


def timed(client, messages, new_tokens: int, **kwargs):
    """(result, seconds per token after the first, as the caller sees them: from the first token to the last, over
    the tokens between; speculative steps deliver tokens in bursts, so a median gap would flatter them)."""
    stamps: list[float] = []
    result = client.generate(messages=messages, max_new_tokens=new_tokens, eos_token_id=None,
                             on_token=lambda token, text: stamps.append(time.perf_counter()), **kwargs)
    return result, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
