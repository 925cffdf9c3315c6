"""Private chats: the first and the last blocks run on this PC, the swarm runs only the blocks between them.

    result = model.generate(messages=[...], private=True)     # DistributedModelForCausalLM

The client loads blocks [0, k) and [n - k, n) itself (k = `model.private_blocks`, 1 by default) with the same
loader, dtype and weight precision as the swarm's servers (their compute name, e.g. "float32+int8"), so the tokens
are exactly those of the plain swarm. A step goes: embeddings and the first k blocks here, the middle blocks
through the swarm (an InferenceSession over [k, n - k), with fail-over and spot checks as usual), the last k blocks,
the final norm and the LM head here. Friends' servers never receive token ids and never compute logits.

What it does not hide: the hidden states the middle servers receive and send. They are not encrypted, and the
model is public: a member who fits a linear map from hidden states to token embeddings on any text of its own
recovers most tokens (measured on SmolLM2-135M: 91 % after 1 block, 66 % after 12 of 30; bench/bench_private.py),
and the state entering the last block, through the final norm and LM head, already names the model's next token
about half the time. SECURITY.md says what this mode protects and what it does not.

Cost: the k + k blocks' weights in this process's memory, and their compute on this PC for every token.
"""

from __future__ import annotations

import asyncio
import threading

import torch

from potluck.core.client.inference import InferenceSession
from potluck.core.client.local import LocalSession
from potluck.core.client.swarm_view import SwarmError
from potluck.core.errors import PotluckError
from potluck.core.model.loading import load_blocks, parse_dtype
from potluck.core.protocol import RouteHop

THIS_PC = "this PC"  # the name of the local hops in a private route
LOCAL_PEER = "local"  # their peer id


class PrivateModeError(PotluckError, ValueError):
    """Private mode cannot run for this model as asked; the message says why and what to change."""


def check_private_blocks(num_blocks: int, private_blocks: int) -> None:
    """Raise PrivateModeError unless keeping `private_blocks` first and last blocks leaves a middle for the swarm."""
    if isinstance(private_blocks, bool) or not isinstance(private_blocks, int) or private_blocks < 1:
        raise PrivateModeError(f"private_blocks must be a whole number >= 1, got {private_blocks!r}")
    if 2 * private_blocks >= num_blocks:
        raise PrivateModeError(f"a private chat keeps {private_blocks} first and {private_blocks} last blocks on this "
                               f"PC, and this model has only {num_blocks}: lower private_blocks, or run it with --local")


def split_compute(compute: str) -> tuple[torch.dtype, str]:
    """("float32+int8") -> (torch.float32, "int8"); ("bfloat16") -> (torch.bfloat16, "none")."""
    name, _, quant = compute.partition("+")
    return parse_dtype(name), quant or "none"


class PrivateBlocks:
    """The blocks a private chat runs on this PC, loaded on first use for the swarm's compute name and kept."""

    def __init__(self, spec, private_blocks: int):
        check_private_blocks(spec.num_blocks, private_blocks)
        self.spec, self.count = spec, private_blocks
        self._loaded: dict[str, tuple[object, object]] = {}
        self._lock = threading.Lock()

    @property
    def middle(self) -> tuple[int, int]:
        """The blocks the swarm runs: [start, end)."""
        return self.count, self.spec.num_blocks - self.count

    def stacks(self, compute: str):
        """(first stack, last stack) computing in `compute`; loads them the first time (blocking: call off the
        event loop)."""
        with self._lock:
            if compute not in self._loaded:
                dtype, quant = split_compute(compute)
                start, end = self.middle
                self._loaded[compute] = (load_blocks(self.spec, 0, start, dtype, quant=quant),
                                         load_blocks(self.spec, end, self.spec.num_blocks, dtype, quant=quant))
            return self._loaded[compute]


class PrivateSession:
    """A session whose first and last blocks run here and whose middle runs on the swarm (the generation loop's
    Session: open, step, rollback_to, close, route_hops, position, failovers)."""

    def __init__(self, blocks: PrivateBlocks, middle: InferenceSession):
        self.blocks, self.middle = blocks, middle
        self.first: LocalSession | None = None
        self.last: LocalSession | None = None

    @property
    def position(self) -> int:
        return self.middle.position

    @property
    def failovers(self) -> list:
        return self.middle.failovers

    @property
    def checks(self) -> list:
        return self.middle.checks

    async def open(self) -> None:
        swarm = self.middle.swarm
        if swarm.compute is None:
            await swarm.records()  # decides the compute name the servers (and so these blocks) use
        if not swarm.compute:
            raise SwarmError("the swarm's servers announce no compute name: cannot load matching private blocks")
        first, last = await asyncio.to_thread(self.blocks.stacks, swarm.compute)
        self.first = LocalSession(first, self.middle.max_length)
        self.last = LocalSession(last, self.middle.max_length)
        await self.first.open()
        await self.last.open()
        await self.middle.open()

    async def step(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = await self.first.step(hidden)
        hidden = await self.middle.step(hidden)
        return await self.last.step(hidden)

    def rollback_to(self, position: int) -> None:
        self.middle.rollback_to(position)
        self.first.rollback_to(position)
        self.last.rollback_to(position)

    async def close(self) -> None:
        try:
            await self.middle.close()
        finally:
            self.first = self.last = None

    def route_hops(self) -> tuple[RouteHop, ...]:
        start, end = self.blocks.middle
        return (RouteHop(peer_id=LOCAL_PEER, name=THIS_PC, start_block=0, end_block=start),
                *self.middle.route_hops(),
                RouteHop(peer_id=LOCAL_PEER, name=THIS_PC, start_block=end, end_block=self.blocks.spec.num_blocks))
