"""What a policy that changes a server's range needs: the `RangeOwner` interface and `restack`.

Runtime resize (core/server/resize.py) and rebalancing (core/server/rebalance.py) decide *which* blocks to host;
the server (core/server/server.py) is the one that swaps its range and tells the sessions. `restack` builds the
new stack from the old one, reusing the blocks both share, so a move or a regrow loads only what is new.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

from potluck.core.model.families import BlockStack
from potluck.core.wire.control import DrainReason

LoadRange = Callable[[int, int], BlockStack]  # (start, end) -> freshly loaded blocks [start, end)


class RangeOwner(Protocol):
    """The part of a block server a range policy uses."""

    spec: object  # core.model.loading.ModelSpec
    dht: object
    peer_id: str

    @property
    def stack(self) -> BlockStack: ...

    async def change_range(self, stack: BlockStack, reason: DrainReason) -> None: ...


async def restack(old: BlockStack, start: int, end: int, load_range: LoadRange) -> BlockStack:
    """Blocks [start, end): the part shared with `old` reused, the rest loaded (in a worker thread)."""
    keep_start, keep_end = max(start, old.start), min(end, old.end)
    if keep_start >= keep_end:
        return await asyncio.to_thread(load_range, start, end)
    stack = old.subrange(keep_start, keep_end)
    if start < keep_start:
        stack = (await asyncio.to_thread(load_range, start, keep_start)).extended(stack)
    if keep_end < end:
        stack = stack.extended(await asyncio.to_thread(load_range, keep_end, end))
    return stack
