"""An inference session that survives servers dying, stalling, refusing or draining mid-generation.

When a server fails, the client bans it, finds other servers for exactly its blocks (core/client/swarm_view.py),
rebuilds their cache by replaying the inputs of every earlier token (taken from the previous server's output
history, or from the client's own embeddings for the first span), re-links the neighbours and retries the step.
A server that asks to be left (drain, resize, rebalance) is replaced the same way between two steps.

With a `SpotChecker` (core/client/checker.py), some steps are also computed by other servers beside the session
and compared; a session whose server was caught computing wrong goes on with the chain that was right.
The blocks [start_block, end_block) default to the whole model; a private chat runs its first and last blocks on
this PC and only the middle ones here (core/client/private.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import torch

from potluck.core.client.chain import SpanFailure, StreamChain
from potluck.core.client.routing import NoRouteError, RouteSpan
from potluck.core.client.swarm_view import Hop, SwarmError, SwarmView
from potluck.core.protocol import RouteHop
from potluck.core.wire.control import DrainReason

log = logging.getLogger(__name__)

DRAIN_RETRY_SECONDS = 2.0  # how often to look for a replica of a draining server that had none


@dataclass(frozen=True)
class Failover:
    """One replacement of a span of the chain, for the caller's report."""

    blocks: tuple[int, int]
    from_peer: str
    to_peers: tuple[str, ...]
    reason: str
    replayed_tokens: int
    seconds: float


class InferenceSession:
    """Steps hidden states through the swarm, keeping what it needs to rebuild a lost server's cache."""

    def __init__(self, swarm: SwarmView, hidden_size: int, max_length: int, *, push: bool = True,
                 timeout: float = 20.0, max_retries: int = 3, failover_wait_seconds: float = 10.0,
                 start_block: int = 0, end_block: int | None = None, checker=None):
        self.swarm, self.hidden_size, self.max_length = swarm, hidden_size, max_length
        self.start_block, self.end_block = start_block, swarm.num_blocks if end_block is None else end_block
        self.checker = checker  # a core.client.checker.SpotChecker, or None: no spot checks
        self.checks: list = []  # core.client.checker.CheckReport of every check made
        self.timeout, self.max_retries, self.failover_wait_seconds = timeout, max_retries, failover_wait_seconds
        self.chain = StreamChain(swarm.p2p, swarm.model_uid, hidden_size, max_length, push, timeout)
        self.position = 0
        self._inputs: list[torch.Tensor] = []  # what the first server received, for replays of span 0
        self.failovers: list[Failover] = []

    @property
    def route(self) -> list[Hop]:
        return [(s.span, s.record) for s in self.chain.streams]

    def route_hops(self) -> tuple[RouteHop, ...]:
        """Which server runs which blocks right now, in order."""
        return tuple(RouteHop(peer_id=span.peer_id, name=record.name, start_block=span.start_block,
                              end_block=span.end_block) for span, record in self.route)

    async def open(self) -> None:
        last_error: Exception | None = None
        for _ in range(self.max_retries + 1):
            route = await self.swarm.route(self.max_length, self.start_block, self.end_block)
            try:
                self.chain.streams = await self.chain.open_spans(route, 0, None, None)
                return
            except SpanFailure as e:
                last_error = e
                self.swarm.bans.ban(e.peer_id)
        raise SwarmError(f"could not open a session: {last_error}")

    async def step(self, hidden: torch.Tensor) -> torch.Tensor:
        """Run `hidden` ([1, n, hidden]) at the next positions; returns the last block's outputs."""
        if self.position + hidden.shape[1] > self.max_length:
            raise ValueError(f"the session was opened for {self.max_length} tokens; this step would make it "
                             f"{self.position + hidden.shape[1]}")
        position = self.position
        for attempt in range(self.max_retries + 1):
            try:
                output = await self.chain.run_step(hidden, position, self.timeout)
                break
            except SpanFailure as failure:
                if attempt == self.max_retries:
                    raise SwarmError(f"gave up after {attempt + 1} tries: {failure}") from None
                self.swarm.bans.ban(failure.peer_id)
                try:
                    await self._replace(failure.index, position, reason=failure.reason)
                except SpanFailure as again:  # a replacement failed too: the next attempt finds and replaces it
                    self.swarm.bans.ban(again.peer_id)
        for stream in self.chain.streams:
            self.swarm.bans.record_success(stream.span.peer_id)
        self._inputs.append(hidden)
        self.position += hidden.shape[1]
        if self.checker is not None:
            output = await self.checker.after_step(self, position, output)
        await self._move_off_draining_servers()
        return output

    def rollback_to(self, position: int) -> None:
        """Forget the tokens from `position` on (rejected speculative guesses): the next step starts there, and
        every server rolls its cache back to it when that step arrives (steps carry absolute positions)."""
        if not 0 <= position <= self.position:
            raise ValueError(f"cannot roll back to {position}: the session holds {self.position} tokens")
        kept, total = [], 0
        for chunk in self._inputs:
            if total + chunk.shape[1] <= position:
                kept.append(chunk)
            elif total < position:
                kept.append(chunk[:, : position - total])
            total += chunk.shape[1]
        self._inputs, self.position = kept, position

    async def _move_off_draining_servers(self) -> None:
        """Move off servers that asked us to; with no replica yet, keep using them and look again later."""
        now = time.monotonic()
        for stream in list(self.chain.streams):
            if stream.drain_reason is not None and now >= stream.retry_drain_at:
                try:
                    await self._replace(self.chain.streams.index(stream), self.position,
                                        reason=stream.drain_reason.value, wait_seconds=0.0,
                                        may_stay=stream.drain_reason is DrainReason.SHRINKING)
                except SwarmError:
                    stream.retry_drain_at = now + DRAIN_RETRY_SECONDS  # it still serves us until it leaves

    async def _replace(self, index: int, position: int, *, reason: str, depth: int = 0,
                       wait_seconds: float | None = None, may_stay: bool = False) -> None:
        """Put other servers in place of chain[index], with their cache rebuilt up to `position`. With
        `may_stay`, the old server may take part of its span again (it shrank its range)."""
        began = time.perf_counter()
        old = self.chain.streams[index]
        deadline = time.monotonic() + (self.failover_wait_seconds if wait_seconds is None else wait_seconds)
        refused: set[str] = set()
        spans = await self._find_replacement(old.span, deadline, may_stay, refused)
        old.close()
        following = self.chain.streams[index + 1] if index + 1 < len(self.chain.streams) else None
        before = self.chain.streams[index - 1].span.peer_id if index > 0 else None
        for attempt in range(self.max_retries + 1):
            try:
                new = await self.chain.open_spans(spans, index, following, before)
                break
            except SpanFailure as failure:  # e.g. a dead server whose record has not expired yet
                self.swarm.bans.ban(failure.peer_id)
                refused.add(failure.peer_id)
                if attempt == self.max_retries:
                    raise SwarmError(f"no replacement for blocks {old.span.start_block}-{old.span.end_block - 1} "
                                     f"accepted a session: {failure}") from None
                spans = await self._find_replacement(old.span, deadline, may_stay, refused)
        self.chain.streams[index : index + 1] = new
        if position > 0:
            inputs = await self._inputs_of(index, position, depth)
            for offset, stream in enumerate(new):
                await self.chain.replay(stream, index + offset, inputs, self.timeout)
                if offset + 1 < len(new):
                    inputs = await self.chain.history(index + offset, position, self.timeout)
        await self.chain.relink(index)
        await self.chain.relink(index + len(new))
        self.failovers.append(Failover(
            (old.span.start_block, old.span.end_block), old.span.peer_id, tuple(s.span.peer_id for s in new), reason,
            position, round(time.perf_counter() - began, 4)))

    async def _find_replacement(self, span: RouteSpan, deadline: float, may_stay: bool, refused: set[str]) -> list[Hop]:
        while True:
            try:
                return await self.swarm.replacement(span, self.max_length, failed_peer_may_stay=may_stay,
                                                    exclude=frozenset(refused))
            except NoRouteError as e:
                if time.monotonic() >= deadline:
                    raise SwarmError(f"no server can take over blocks {span.start_block}-{span.end_block - 1}: {e}") from None
                await asyncio.sleep(0.5)  # a joining server may show up

    async def _inputs_of(self, index: int, position: int, depth: int) -> torch.Tensor:
        if index == 0:
            return torch.cat(self._inputs, dim=1)[:, :position]
        try:
            return await self.chain.history(index - 1, position, self.timeout)
        except SpanFailure as failure:  # the previous server is gone too: rebuild it first
            if depth >= len(self.chain.streams):
                raise
            self.swarm.bans.ban(failure.peer_id)
            await self._replace(index - 1, position, reason=failure.reason, depth=depth + 1)
            return await self.chain.history(index - 1, position, self.timeout)

    async def close(self) -> None:
        await self.chain.close()
