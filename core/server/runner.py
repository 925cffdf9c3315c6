"""Running a block server as a process: pick the blocks, load them, join the swarm, serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import AsyncContextManager, Callable

from potluck.core.model.loading import ModelSpec, load_blocks, open_model, resolve_dtype
from potluck.core.model.progress import reporting
from potluck.core.server.block_selection import choose_blocks
from potluck.core.server.memory import probe_free_bytes
from potluck.core.server.rebalance import Rebalancer
from potluck.core.server.resize import MemoryWatcher, ResizePolicy
from potluck.core.server.server import BlockServer, ServerConfig
from potluck.core.server.sizing import MemoryPlanInput, plan_num_blocks
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.records import unique_servers

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 256 * 2**20  # activations of one step, beside weights and cache


@dataclass(frozen=True)
class ServeOptions:
    model: str
    blocks: tuple[int, int] | None = None  # explicit range; None: choose from the swarm's coverage
    num_blocks: int | None = None  # how many to host; None: size from free memory
    dtype: str = "auto"  # "auto": the checkpoint's own dtype (core/model/loading.resolve_dtype)
    quant: str = "none"  # weight precision: none, int8 or int4
    device: str = "cpu"
    revision: str | None = None
    dht: swarm_dht.DHTOptions = field(default_factory=swarm_dht.DHTOptions)
    server: ServerConfig = field(default_factory=ServerConfig)
    reserve_bytes: int = 2 * 2**30  # memory left free for the owner's own programs; below it, blocks are shed
    resize: bool = True  # shed blocks under memory pressure and grow back when memory is free again
    rebalance_period_seconds: float = 120.0  # how often a server that chose its own range checks for a better one
    admit: Callable[[str], bool] | None = None  # who may call this server (a private swarm's member check)
    attach: Callable[[object], AsyncContextManager] | None = None  # (dht) -> services that run while serving
    progress: object | None = None  # begin(start, block_bytes), on_download(step), on_block(index): e.g. a bar


def choose_range(spec: ModelSpec, options: ServeOptions, dht) -> tuple[int, int]:
    """The block range to host: explicit, or the best `num_blocks` range for the swarm's weakest coverage."""
    if options.blocks is not None:
        start, end = options.blocks
        if not 0 <= start < end <= spec.num_blocks:
            raise ValueError(f"--blocks {start}:{end} is outside this model's 0:{spec.num_blocks}")
        return start, end
    count = options.num_blocks if options.num_blocks is not None else size_from_memory(spec, options).num_blocks
    count = max(1, min(count, spec.num_blocks))
    records = []
    if options.dht.initial_peers:
        loop = asyncio.new_event_loop()
        try:
            by_block = loop.run_until_complete(swarm_dht.fetch_records(dht, spec.uid, range(spec.num_blocks)))
        finally:
            loop.close()
        records = unique_servers(by_block)
    return choose_blocks(count, spec.num_blocks, records)


def size_from_memory(spec: ModelSpec, options: ServeOptions):
    dtype = resolve_dtype(spec, options.dtype, options.device)
    free_bytes = probe_free_bytes(options.device)
    return plan_num_blocks(MemoryPlanInput(
        device="cuda" if options.device.startswith("cuda") else "cpu", free_bytes=free_bytes,
        bytes_per_block=spec.block_bytes(dtype, precision=options.quant),
        cache_bytes_per_token_per_block=spec.cache_bytes_per_token(dtype),
        cache_tokens=options.server.cache_tokens, workspace_bytes=WORKSPACE_BYTES, reserve_bytes=options.reserve_bytes,
        max_blocks=spec.num_blocks,
    ))


async def run_server(options: ServeOptions, on_ready: Callable[[BlockServer], None], stop: asyncio.Event) -> None:
    """Load, announce, serve until `stop` is set, then drain and announce offline."""
    spec = open_model(options.model, options.revision)
    dtype = resolve_dtype(spec, options.dtype, options.device)
    dht = swarm_dht.start_dht(options.dht)
    server = None
    try:
        async with options.attach(dht) if options.attach is not None else contextlib.nullcontext():
            start, end = await asyncio.to_thread(choose_range, spec, options, dht)  # it runs its own event loop
            stack = await _load(spec, start, end, dtype, options)
            server = await BlockServer.create(spec, stack, dht, options.server, admit=options.admit)
            start_policies(server, spec, options, dtype)
            on_ready(server)
            await stop.wait()
            await server.drain()
    finally:
        if server is not None:
            await server.shutdown()
        dht.shutdown()


async def _load(spec: ModelSpec, start: int, end: int, dtype, options: ServeOptions):
    """load_blocks on a thread, telling `options.progress` (if any) about downloads and each block built."""
    progress = options.progress
    if progress is None:
        return await asyncio.to_thread(load_blocks, spec, start, end, dtype, options.device, quant=options.quant)
    progress.begin(start, [spec.block_bytes(dtype, i, options.quant) for i in range(start, end)])
    with reporting(progress.on_download):
        return await asyncio.to_thread(load_blocks, spec, start, end, dtype, options.device, quant=options.quant,
                                       on_block=progress.on_block)


def start_policies(server: BlockServer, spec: ModelSpec, options: ServeOptions, dtype) -> None:
    """What changes a server's range at runtime: resize under memory pressure, and rebalancing when the server
    chose its range itself (an explicit --blocks range stays where the owner put it)."""
    def load_range(start: int, end: int):
        return load_blocks(spec, start, end, dtype, options.device, quant=options.quant)

    if options.resize:
        per_block = (spec.block_bytes(dtype, precision=options.quant)
                     + spec.cache_bytes_per_token(dtype) * options.server.cache_tokens)
        policy = ResizePolicy(reserve_bytes=options.reserve_bytes, per_block_bytes=per_block)
        server.run_in_background(MemoryWatcher(server, lambda: probe_free_bytes(options.device), policy, load_range).run())
    if options.blocks is None:
        server.run_in_background(Rebalancer(server, load_range, options.rebalance_period_seconds).run())


def serve_forever(options: ServeOptions, on_ready: Callable[[BlockServer], None]) -> None:
    """Run a server in this process until SIGTERM or SIGINT; both drain first."""
    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_server(options, on_ready, stop)

    asyncio.run(main())
