"""Periodic rebalancing: a server that chose its range itself moves when that clearly helps the swarm.

`should_move` (pure, core/server/block_selection.py) decides; this module carries the move out. Blocks the old
and new ranges share are kept, not reloaded; the rest is loaded before the switch, then the new range is
announced and sessions that used the old one are asked to move.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Callable

from potluck.core import wire
from potluck.core.model.families import BlockStack
from potluck.core.server.block_selection import should_move
from potluck.core.swarm import dht as swarm_dht

if TYPE_CHECKING:
    from potluck.core.server.server import BlockServer

log = logging.getLogger(__name__)


async def rebalance_forever(server: "BlockServer", period_seconds: float, load_range: Callable[[int, int], BlockStack]) -> None:
    while True:
        await asyncio.sleep(period_seconds)
        try:
            await rebalance_once(server, load_range)
        except Exception:  # a failed check or load must not stop serving; the next period tries again
            log.exception("rebalancing failed")


async def rebalance_once(server: "BlockServer", load_range: Callable[[int, int], BlockStack]) -> tuple[int, int] | None:
    total = server.spec.num_blocks
    by_block = await swarm_dht.fetch_records(server.dht, server.spec.uid, range(total))
    records = swarm_dht.unique_servers(by_block)
    current = (server.stack.start, server.stack.end)
    target = should_move(server.peer_id, current, total, records)
    if target is None or tuple(target) == current:
        return None
    await move_to(server, tuple(target), load_range)
    return tuple(target)


async def move_to(server: "BlockServer", target: tuple[int, int], load_range) -> None:
    old = server.stack
    start, end = target
    keep_start, keep_end = max(start, old.start), min(end, old.end)
    if keep_start < keep_end:  # reuse the blocks both ranges share
        stack = old.subrange(keep_start, keep_end)
        if start < keep_start:
            stack = (await asyncio.to_thread(load_range, start, keep_start)).extended(stack)
        if keep_end < end:
            stack = stack.extended(await asyncio.to_thread(load_range, keep_end, end))
    else:
        stack = await asyncio.to_thread(load_range, start, end)
    server.stack = stack
    await server.announce()
    for handler in server.session_handlers():
        session = handler.session
        if session is not None and not (start <= session.stack.start and session.stack.end <= end):
            await handler.send(wire.encode_json({"op": "drain", "reason": "drain", "message": f"this server moved to blocks {start}:{end}"}))
    server.moves.append({"from": [old.start, old.end], "to": [start, end], "time": time.time()})
    log.warning("moved from blocks %s:%s to %s:%s, where the swarm needed them", old.start, old.end, start, end)
