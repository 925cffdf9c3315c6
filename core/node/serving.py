"""One serving period of the node: open the model, size from free memory, pick the blocks, load them, serve them
with a BlockServer; later drain, shut down and give the memory back. The DHT is not ours: it outlives a pause.

Built from the engine's pieces (core.server.runner: size_from_memory, choose_range; core.model.loading;
core.server.server.BlockServer). Heavy libraries are imported inside functions: the node says hello first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from potluck.core import protocol
from potluck.core.model.checkpoint import CheckpointError
from potluck.core.model.progress import reporting
from potluck.core.node.config import NodeConfig
from potluck.core.node.plan import BlockPlan, NodeSetupError, chosen_plan, plan_from_sizing, range_words
from potluck.core.node.progress import LoadProgress
from potluck.core.node.stats import Contribution, span_words
from potluck.core.server.memory import available_ram_bytes, probe_free_bytes
from potluck.core.server.sizing import SizingError

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # what core.model.checkpoint accepts as a hub id


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_problem(model: str) -> str:
    """Why `model` cannot be opened before even trying, in plain words ('' when it may be fine)."""
    if not model:
        return "No model is set. Choose one in Settings."
    path = os.path.expanduser(model)
    is_gguf_file = os.path.isfile(path) and path.lower().endswith(".gguf")
    if not os.path.isdir(path) and not is_gguf_file and not _HUB_ID.fullmatch(model):
        return f"The model {model} does not exist. Choose the model's folder or .gguf file again in Settings."
    return ""


def open_model_checked(model: str, revision: str | None = None):
    """open_model, with failures a retry will not fix turned into NodeSetupError (plain words)."""
    from potluck.core.model.families import UnsupportedModelError
    from potluck.core.model.loading import open_model

    problem = model_problem(model)
    if problem:
        raise NodeSetupError(problem)
    try:
        return open_model(os.path.expanduser(model), revision)
    except UnsupportedModelError as exc:
        raise NodeSetupError(f"Potluck cannot run this model yet: {exc}") from None
    except CheckpointError as exc:
        if os.path.exists(os.path.expanduser(model)):
            raise NodeSetupError(f"The model cannot be used: {exc}") from None
        raise  # a hub download failing may work next time


def serve_options(config: NodeConfig, model: str, device: str, quant: str = "none"):
    """The engine's ServeOptions for these settings (the swarm's DHT options and admission are added later)."""
    from potluck.core.model.loading import DtypeError, check_dtype_name
    from potluck.core.server.runner import ServeOptions
    from potluck.core.server.server import ServerConfig

    try:
        check_dtype_name(config.dtype, device)
    except DtypeError as exc:
        raise NodeSetupError(f"{exc}.") from None
    return ServeOptions(model=model, num_blocks=config.num_blocks, dtype=config.dtype, quant=quant, device=device,
                        server=ServerConfig(name=config.pc_name, cache_tokens=config.cache_tokens))


def plan_blocks(spec, options, config: NodeConfig) -> BlockPlan:
    """How many blocks to host: the owner's number, or sizing from free memory under the owner's cap."""
    from potluck.core.server.runner import size_from_memory

    if config.num_blocks is not None:
        return chosen_plan(min(config.num_blocks, spec.num_blocks))
    try:
        decision = size_from_memory(spec, options)
    except SizingError as exc:
        raise NodeSetupError(f"Not enough free memory to host even one block of this model: {exc}.") from None
    return plan_from_sizing(decision.num_blocks, decision.per_block_total_bytes, decision.explanation,
                            config.memory_cap_bytes, probe_free_bytes(options.device), decision.usable_bytes)


def choose_blocks(spec, options, plan: BlockPlan, dht) -> tuple[int, int, bool]:
    """(start, end, whether other servers were seen): the engine's gap-filling choice for `plan.num_blocks`."""
    from potluck.core.server.runner import choose_range

    start, end = choose_range(spec, dataclasses.replace(options, num_blocks=plan.num_blocks), dht)
    return start, end, bool(options.dht.initial_peers)


@dataclass
class Serving:
    """A running BlockServer and when it started."""
    server: object  # core.server.server.BlockServer
    started_monotonic: float

    @property
    def start_block(self) -> int:
        return self.server.stack.start

    @property
    def end_block(self) -> int:
        return self.server.stack.end

    @property
    def draining(self) -> bool:
        return self.server.draining

    def contribution(self) -> Contribution:
        stats = self.server.stats
        return Contribution(
            start_block=self.start_block, end_block=self.end_block, tokens_served=stats.tokens_served,
            tokens_for_others=stats.tokens_for_others,
            sessions_served=stats.sessions_served, active_sessions=self.server.active_sessions,
            bytes_up=stats.bytes_up, bytes_down=stats.bytes_down,
            uptime_seconds=time.monotonic() - self.started_monotonic,
            block_tokens_per_second=self.server.throughput_tokens_per_second,
        )

    async def drain(self, timeout_seconds: float | None = None) -> None:
        """No new sessions; live ones are told to move; wait (bounded) until they are gone."""
        try:
            await asyncio.wait_for(self.server.drain(), timeout_seconds)
        except asyncio.TimeoutError:
            log.warning("%d conversation(s) still open after %.0f s of draining", self.server.active_sessions,
                        timeout_seconds)

    async def undrain(self) -> None:
        """Take new sessions again after a drain (the owner resumed before pausing)."""
        await self.server.resume()

    async def stop(self) -> None:
        """Announce offline, remove the handlers, and give the memory back.

        The server's p2p replica stays open (a few sockets): with hivemind 1.1.12, closing a replica's connection
        to p2pd broke the stream handlers that the next serving period registered on the same daemon (every new
        session then failed with "Connection lost")."""
        server, self.server = self.server, None
        try:
            await server.shutdown()  # it lets go of the weights
        finally:
            del server
            release_memory()


async def start_serving(spec, options, config: NodeConfig, dht, progress: Callable[[str], None],
                        on_sizing: Callable[[protocol.Event], None]) -> Serving:
    """Size, choose, load, announce. Raises NodeSetupError (plain words) for what a retry will not fix.
    `on_sizing` sends the `sizing` event and the `progress` events of loading."""
    from potluck.core.model.loading import load_blocks, resolve_dtype
    from potluck.core.server.runner import start_policies
    from potluck.core.server.server import BlockServer

    progress("Measuring free memory")
    plan = await asyncio.to_thread(plan_blocks, spec, options, config)
    start, end, others = await asyncio.to_thread(choose_blocks, spec, options, plan, dht)  # runs its own loop
    dtype = resolve_dtype(spec, options.dtype, options.device)
    explanation = range_words(plan, start, end, spec.num_blocks, others)
    sparse = [i for i in range(start, end) if spec.block_bytes(dtype, i) != spec.active_block_bytes(dtype, i)]
    if sparse:  # a mixture of experts: say what a block holds and what a token reads of it
        explanation += f" Here {spec.describe_block(dtype, sparse[0])}."
    on_sizing(protocol.Sizing(num_blocks=end - start, start_block=start, end_block=end, total_blocks=spec.num_blocks,
                              explanation=explanation, numbers=plan.numbers))
    words = span_words(start, end)
    progress(f"Loading {words}")
    loading = LoadProgress(on_sizing, start, [spec.block_bytes(dtype, i, options.quant) for i in range(start, end)])
    loading.begin()  # `progress` events: the app's bars (downloads inside report their bytes too)
    try:
        with reporting(loading.on_download):
            stack = await asyncio.to_thread(load_blocks, spec, start, end, dtype, options.device, quant=options.quant,
                                            on_block=loading.on_block)
    except MemoryError:
        raise NodeSetupError(f"Ran out of memory while loading {words}. Close other programs or set a lower "
                             "memory limit in Settings.") from None
    progress(f"Joining the swarm with {words}")
    server = await BlockServer.create(spec, stack, dht, options.server, admit=options.admit)
    start_policies(server, spec, options, dtype)  # resize and rebalance at runtime
    return Serving(server, time.monotonic())


def release_memory() -> None:
    """Give freed tensors back: Python's collector, torch's GPU cache, and glibc's heap (on Linux)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # no torch, or no usable GPU: nothing to give back there
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_bytes(device: str) -> tuple[int, int]:
    """(used by this node, free on the device): GPU memory held by torch on a GPU, else this process's RAM."""
    if device.startswith("cuda"):
        import torch

        free_bytes, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(torch.cuda.memory_reserved(torch.device(device))), int(free_bytes)
    try:
        free_bytes = available_ram_bytes()
    except RuntimeError:
        free_bytes = 0
    return _resident_bytes(), free_bytes


def _resident_bytes() -> int:
    """What this process holds in RAM now (resident pages: its own memory and the model files it maps; the blocks'
    weights are often mapped from the checkpoint's files, so its private memory alone would leave them out)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak; the best this platform offers
        return peak * (1 if os.uname().sysname == "Darwin" else 1024)
