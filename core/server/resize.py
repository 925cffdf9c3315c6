"""Runtime resize: shed blocks when another program takes the memory, grow back when it is free for a while.

The watcher polls an injectable memory probe (free VRAM or available RAM). Below the reserve it asks the server
to host fewer blocks, from the end of the range (the server announces the smaller range first, so new routes
avoid the blocks, then asks the sessions that use them to move; the weights go once no session holds them).
When free memory has stayed above reserve + one block + margin for `grow_after_seconds`, it loads blocks back,
up to the range the server started with. The numbers are decided by pure functions in core/server/sizing.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from typing import Callable

from potluck.core.server.ranges import LoadRange, RangeOwner, restack
from potluck.core.server.sizing import blocks_to_grow, blocks_to_shed
from potluck.core.wire.control import DrainReason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResizePolicy:
    reserve_bytes: int  # memory the owner wants left free for their own programs
    per_block_bytes: int  # what one block costs: weights plus its share of the cache budget
    check_period_seconds: float = 2.0  # how often free memory is probed
    grow_after_seconds: float = 60.0  # free memory must stay high this long before blocks are loaded back


class MemoryWatcher:
    def __init__(self, server: RangeOwner, probe: Callable[[], int], policy: ResizePolicy, load_range: LoadRange):
        self.server, self.probe, self.policy, self.load_range = server, probe, policy, load_range
        self.target_end = server.stack.end  # grow back up to the range the server started with
        self._high_since: float | None = None
        self._grow_candidates: list[int] = []

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.policy.check_period_seconds)
            try:
                await self.check_once()
            except Exception:  # a failed probe or load must not stop serving
                log.exception("memory check failed")

    async def check_once(self) -> None:
        free = int(self.probe())
        stack = self.server.stack
        current = stack.end - stack.start
        shed = blocks_to_shed(current, free, self.policy.reserve_bytes, self.policy.per_block_bytes)
        if shed:
            self._high_since, self._grow_candidates = None, []
            await self.shed(min(shed, current - 1))  # keep one block: a server with none is just offline
            return
        room = self.target_end - stack.end
        grow = blocks_to_grow(current, free, self.policy.reserve_bytes, self.policy.per_block_bytes,
                              current + room) if room > 0 else 0
        if grow <= 0:
            self._high_since, self._grow_candidates = None, []
            return
        now = time.monotonic()
        self._high_since = self._high_since or now
        self._grow_candidates.append(grow)
        if now - self._high_since >= self.policy.grow_after_seconds:
            await self.grow(min(self._grow_candidates))
            self._high_since, self._grow_candidates = None, []

    async def shed(self, count: int) -> None:
        if count <= 0:
            return
        old = self.server.stack
        await self.server.change_range(old.subrange(old.start, old.end - count), DrainReason.SHRINKING)
        del old
        gc.collect()  # the shed layers go as soon as no session holds them

    async def grow(self, count: int) -> None:
        stack = self.server.stack
        end = min(stack.end + count, self.target_end)
        if end > stack.end:
            await self.server.change_range(await restack(stack, stack.start, end, self.load_range))
