"""Runtime resize: shed blocks when another program takes the memory, grow back when it is free for a while.

The watcher polls an injectable memory probe (free VRAM or available RAM). Below the reserve it sheds blocks from
the end of the range: it announces the smaller range first (so new routes avoid the blocks), asks the sessions
that use them to move, then lets go of the weights. When free memory has stayed above reserve + one block +
margin for `grow_after_seconds`, it loads blocks back, up to the range it started with.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from potluck.core import wire
from potluck.core.server.sizing import blocks_to_grow, blocks_to_shed

if TYPE_CHECKING:
    from potluck.core.server.server import BlockServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResizePolicy:
    reserve_bytes: int  # memory the owner wants left free for their own programs
    per_block_bytes: int  # what one block costs: weights plus its share of the cache budget
    check_period_seconds: float = 2.0  # how often free memory is probed
    grow_after_seconds: float = 60.0  # free memory must stay high this long before blocks are loaded back


class MemoryWatcher:
    def __init__(self, server: "BlockServer", probe: Callable[[], int], policy: ResizePolicy, load_range):
        self.server, self.probe, self.policy, self.load_range = server, probe, policy, load_range
        self.target_end = server.stack.end  # grow back up to the range the server started with
        self._high_since: float | None = None
        self._grow_candidates: list[int] = []
        self.events: list[dict] = []  # what happened, for stats and tests

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
        server, old = self.server, self.server.stack
        new_end = old.end - count
        server.stack = old.subrange(old.start, new_end)
        await server.announce()  # new routes avoid the shed blocks from now on
        for handler in server.session_handlers():
            if handler.session is not None and handler.session.stack.end > new_end:
                await handler.send(wire.encode_json({"op": "drain", "reason": "resize",
                                                     "message": f"this server now hosts blocks {old.start}:{new_end}"}))
        del old
        gc.collect()  # the shed layers go as soon as no session holds them
        self.events.append({"shed": count, "range": [server.stack.start, server.stack.end], "time": time.time()})
        log.warning("free memory below the reserve: now hosting blocks %s:%s", server.stack.start, server.stack.end)

    async def grow(self, count: int) -> None:
        server = self.server
        start, end = server.stack.end, min(server.stack.end + count, self.target_end)
        if end <= start:
            return
        more = await asyncio.to_thread(self.load_range, start, end)
        server.stack = server.stack.extended(more)
        await server.announce()
        self.events.append({"grew": end - start, "range": [server.stack.start, server.stack.end], "time": time.time()})
        log.warning("memory is free again: now hosting blocks %s:%s", server.stack.start, server.stack.end)
