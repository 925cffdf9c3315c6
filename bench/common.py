"""What both benchmarks share: the models, the local baseline, timed generations through a swarm, server counters.

Nothing here runs at import. torch, transformers and hivemind are imported inside the functions, so a script can
set GOMP_SPINCOUNT (see shared/ENGINE_NOTES.md) before torch first loads.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> (hidden size, layers): the two Llama sizes of the engine issue
MODELS = {"tiny": (256, 8), "mid": (1024, 16)}
PROMPT_SEED = 1234


def set_thread_environment() -> str:
    """Give this process the OpenMP spin the servers get from `child_environment`; call before importing torch."""
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    return os.environ["GOMP_SPINCOUNT"]


def machine_info() -> dict:
    import hivemind
    import torch
    import transformers

    return {
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "hivemind": hivemind.__version__, "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "(default)"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(info: dict) -> str:
    return (f"machine: {info['cpu_cores']} cores, torch {info['torch']} with {info['torch_threads']} threads, "
            f"transformers {info['transformers']}, hivemind {info['hivemind']}, GOMP_SPINCOUNT={info['GOMP_SPINCOUNT']}, "
            f"load average {' '.join(str(x) for x in info['load_average'])}\n  {info['platform']}, Python {info['python']}")


def build_model(name: str, root: Path) -> Path:
    """The random-weight Llama `name` (see MODELS), float32, sharded like a real checkpoint."""
    from potluck.core.model.tiny import make_tiny_model

    hidden, layers = MODELS[name]
    return make_tiny_model("llama", root / f"{name}-llama", layers=layers, hidden=hidden, seed=0, shard_size="64MB")


def prompt_ids(length: int, vocab_size: int, seed: int = PROMPT_SEED) -> list[int]:
    rng = random.Random(seed + length)
    return [rng.randrange(6, vocab_size) for _ in range(length)]  # skip the special tokens 0-5


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalModel:
    """The whole model in this process with transformers: the baseline every ratio is taken against.

    Decoding is a cached greedy loop doing what a Potluck client and its servers do together per token: embedding,
    every block, final norm, LM head on the last position, argmax. (`model.generate` adds logits processors and
    stopping checks on top, which would flatter the ratios.)
    """

    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def _forward(self, ids, cache):
        return self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits[0, -1]

    def decode(self, prompt: list[int], new_tokens: int) -> tuple[list[int], list[float]]:
        """Greedy tokens, and the seconds of each token after the first (the prompt's prefill is not timed)."""
        from transformers import DynamicCache

        torch = self.torch
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            tokens = [int(self._forward(torch.tensor([prompt]), cache).argmax())]
            gaps = []
            while len(tokens) < new_tokens:
                began = time.perf_counter()
                tokens.append(int(self._forward(torch.tensor([[tokens[-1]]]), cache).argmax()))
                gaps.append(time.perf_counter() - began)
        return tokens, gaps

    def prefill(self, ids: list[int]) -> float:
        from transformers import DynamicCache

        with self.torch.inference_mode():
            began = time.perf_counter()
            int(self._forward(self.torch.tensor([ids]), DynamicCache(config=self.model.config)).argmax())
            return time.perf_counter() - began


def swarm_decode(client, prompt: list[int], new_tokens: int, on_token=None):
    """Generate greedily through the swarm; returns (result, gaps): seconds between consecutive tokens as the
    caller sees them (head, argmax, detokenising and the whole chain of servers included)."""
    stamps: list[float] = []

    def stamp(token_id: int, text: str) -> None:
        stamps.append(time.perf_counter())
        if on_token is not None:
            on_token(len(stamps), stamps)

    result = client.generate(prompt, max_new_tokens=new_tokens, eos_token_id=None, on_token=stamp)
    return result, [b - a for a, b in zip(stamps, stamps[1:])]


async def counted_decode(client, prompt: list[int], steps: int, snapshot) -> dict:
    """Greedy decoding on an inference session of our own, with `await snapshot(session)` (a dict of counters)
    taken after the prefill and after `steps` decode steps; returns the differences and the hops per token
    (links the hidden state crosses: servers + 1 with push, 2 x servers when the client relays)."""
    import torch

    from potluck.core.client.inference import InferenceSession

    session = InferenceSession(client.swarm, client.spec.hidden_size, len(prompt) + steps + 1, push=client.push,
                               timeout=client.timeout, max_retries=0)
    await session.open()
    try:
        hidden = await session.step(client.parts.embed_ids(torch.tensor([prompt])).to(client.dtype))
        before = await snapshot(session)
        for _ in range(steps):
            token = int(client.parts.logits(hidden[:, -1:].float())[0, -1].argmax())
            hidden = await session.step(client.parts.embed_ids(torch.tensor([[token]])).to(client.dtype))
        after = await snapshot(session)
        n_servers = len(session.chain.streams)
    finally:
        await session.close()
    return {"steps": steps, "hops": n_servers + 1 if client.push else 2 * n_servers, **{k: after[k] - before[k] for k in after}}


async def app_bytes(client, servers, session) -> dict:
    """Frame bytes so far: the session's client counters, and all servers' counters (read with pings)."""
    stats = [await server_stats(client.swarm.p2p, s.peer_id, s.maddrs) for s in servers]
    sent, received = session.chain.bytes_total()
    return {"client_sent": sent, "client_received": received,
            "servers_up": sum(s["bytes_up"] for s in stats), "servers_down": sum(s["bytes_down"] for s in stats)}


async def server_stats(p2p, peer_id: str, addrs, timeout: float = 10.0) -> dict:
    """A server's counters (bytes_up, bytes_down, tokens_served, ...), read with a ping."""
    from potluck.core.swarm.streams import PING_PROTOCOL, close_writer, open_stream
    from potluck.core.wire import control, framing

    reader, writer = await open_stream(p2p, peer_id, PING_PROTOCOL, addrs, timeout)
    try:
        await framing.send(writer, control.encode(control.Ping()))
        reply = control.decode(await asyncio.wait_for(framing.receive(reader), timeout))
    finally:
        close_writer(writer)
    if not isinstance(reply, control.Pong):
        raise RuntimeError(f"server {peer_id[-8:]} answered the ping with {type(reply).__name__}")
    return reply.stats


def kill_group(server) -> None:
    """kill -9 a server started by LocalSwarm and everything it started (its DHT process and p2pd): a crashed PC."""
    try:
        os.killpg(server.process.pid, signal.SIGKILL)  # start_new_session=True: the group id is the server's pid
    except (ProcessLookupError, PermissionError):
        pass
    try:
        server.process.wait(10)
    except Exception:  # reaping is best effort; the group is already killed
        pass


def stop_swarm(swarm) -> None:
    """Stop every server cleanly, then make sure nothing of theirs is left (helpers of a killed server included)."""
    try:
        swarm.stop()
    finally:
        for server in swarm.servers:
            kill_group(server)


def potluck(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`potluck ARGS…` as a fresh process with the servers' engine settings, its output captured; returns when the
    process has exited, as a shell does. (Its output goes to files, not pipes: torch's shared-memory manager, which
    hivemind starts, keeps the stderr it inherited open for about 2 s after the process is gone, and reading a pipe
    to its end would time that too.)"""
    from potluck.core.localswarm import child_environment

    command = [sys.executable, "-m", "potluck.core", *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run(command, stdout=out, stderr=err, text=True, timeout=timeout, env=child_environment())
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, done.returncode, out.read(), err.read())
