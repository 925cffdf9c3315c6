"""Periodic rebalancing: a server that chose its range itself moves when that clearly helps the swarm.

`should_move` (pure, core/server/block_selection.py) decides; this policy reads the swarm's records and asks the
server to change its range (core/server/ranges.py). Blocks the old and new ranges share are kept, not reloaded.
"""

from __future__ import annotations

import asyncio
import logging

from potluck.core.server.block_selection import should_move
from potluck.core.server.ranges import LoadRange, RangeOwner, restack
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.records import unique_servers
from potluck.core.wire.control import DrainReason

log = logging.getLogger(__name__)


class Rebalancer:
    def __init__(self, server: RangeOwner, load_range: LoadRange, period_seconds: float):
        self.server, self.load_range, self.period_seconds = server, load_range, period_seconds

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period_seconds)
            try:
                await self.check_once()
            except Exception:  # a failed check or load must not stop serving; the next period tries again
                log.exception("rebalancing failed")

    async def check_once(self) -> tuple[int, int] | None:
        """Move if that clearly helps; the new range, or None when staying."""
        server = self.server
        total = server.spec.num_blocks
        by_block = await swarm_dht.fetch_records(server.dht, server.spec.uid, range(total))
        current = (server.stack.start, server.stack.end)
        target = should_move(server.peer_id, current, total, unique_servers(by_block))
        if target is None or tuple(target) == current:
            return None
        start, end = target
        await server.change_range(await restack(server.stack, start, end, self.load_range), DrainReason.MOVING)
        return start, end
