"""An inference session that survives servers dying, stalling, refusing or draining mid-generation."""

from __future__ import annotations

import asyncio
import logging
import time

import torch

from potluck.core.client.backoff import BanList
from potluck.core.client.routing import NoRouteError, RouteSpan, choose_route
from potluck.core import wire
from potluck.core.client.session import RemoteChain, SpanFailure
from potluck.core.swarm.streams import PING_PROTOCOL, close_writer, open_stream
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.records import ServerRecord

log = logging.getLogger(__name__)

DRAIN_RETRY_SECONDS = 2.0  # how often to look for a replica of a draining server that had none
LATENCY_TTL_SECONDS = 60.0  # a measured round trip is trusted this long
PING_TIMEOUT_SECONDS = 2.0
UNREACHABLE_LATENCY_MS = 5_000.0  # a server that does not answer a ping is routed through only as a last resort


class SwarmError(RuntimeError):
    """The swarm cannot serve this request right now; the message says which blocks are missing or why."""


class SwarmView:
    """What a client knows of the swarm for one model: records from the DHT, bans, measured latencies."""

    def __init__(self, dht, p2p, model_uid: str, num_blocks: int, *, bans: BanList | None = None, self_peer_id: str | None = None):
        self.dht, self.p2p, self.model_uid, self.num_blocks = dht, p2p, model_uid, num_blocks
        self.bans = bans or BanList()
        self.latency_ms: dict[str, float] = {}  # round trip to each server, ms (what routing minimises)
        self._measured_at: dict[str, float] = {}
        self._pinned: set[str] = set()
        self.self_peer_id = self_peer_id

    async def records(self, start: int = 0, end: int | None = None) -> dict[str, ServerRecord]:
        by_block = await swarm_dht.fetch_records(self.dht, self.model_uid, range(start, self.num_blocks if end is None else end))
        return {r.peer_id: r for r in swarm_dht.unique_servers(by_block)}

    async def measure_latencies(self, records: dict[str, ServerRecord]) -> None:
        """Ping servers not measured in the last LATENCY_TTL_SECONDS (in parallel); keep round trips in ms."""
        now = time.monotonic()
        stale = [r for r in records.values() if now - self._measured_at.get(r.peer_id, -1e9) > LATENCY_TTL_SECONDS
                 and r.peer_id not in self._pinned]
        results = await asyncio.gather(*(self._ping(r) for r in stale), return_exceptions=True)
        for record, result in zip(stale, results):
            self.latency_ms[record.peer_id] = result if isinstance(result, float) else UNREACHABLE_LATENCY_MS
            self._measured_at[record.peer_id] = now

    async def _ping(self, record: ServerRecord) -> float:
        reader, writer = await open_stream(self.p2p, record.peer_id, PING_PROTOCOL, record.addrs, PING_TIMEOUT_SECONDS)
        try:
            rtts = []
            for _ in range(2):  # the first round trip also sets the stream up; keep the best
                began = time.perf_counter()
                await wire.send(writer, wire.encode_json({"op": "ping"}))
                await asyncio.wait_for(wire.receive(reader), PING_TIMEOUT_SECONDS)
                rtts.append((time.perf_counter() - began) * 1000)
            return min(rtts)
        finally:
            close_writer(writer)

    def pin_latency(self, latencies: dict[str, float]) -> None:
        """Use these latencies instead of measuring (tests, or a user's preference for some servers)."""
        self.latency_ms.update(latencies)
        self._pinned.update(latencies)

    async def route(self, min_cache_tokens: int = 0, exclude: set[str] = frozenset()) -> list[tuple[RouteSpan, ServerRecord]]:
        records = await self.records()
        await self.measure_latencies(records)
        try:
            spans = choose_route(
                records.values(), self.num_blocks, latency_ms=self.latency_ms, banned=self.bans.banned_peers() | exclude,
                min_cache_tokens=min_cache_tokens, self_peer_id=self.self_peer_id,
            )
        except NoRouteError as e:
            raise SwarmError(f"the swarm cannot run {self.model_uid} right now: {e}") from None
        return [(span, records[span.peer_id]) for span in spans]

    async def replacement(self, failed: RouteSpan, min_cache_tokens: int, exclude: set[str]) -> list[tuple[RouteSpan, ServerRecord]]:
        records = await self.records(failed.start_block, failed.end_block)
        spans = choose_route(  # exactly the failed span's blocks; `exclude` says whether its server may stay
            records.values(), self.num_blocks, start_block=failed.start_block, end_block=failed.end_block,
            banned=self.bans.banned_peers() | exclude, latency_ms=self.latency_ms, min_cache_tokens=min_cache_tokens,
            self_peer_id=self.self_peer_id,
        )
        return [(span, records[span.peer_id]) for span in spans]


class InferenceSession:
    """Steps hidden states through the swarm, keeping what it needs to rebuild a lost server's cache."""

    def __init__(self, swarm: SwarmView, hidden_size: int, max_length: int, *, push: bool = True,
                 timeout: float = 20.0, max_retries: int = 3, failover_wait_seconds: float = 10.0):
        self.swarm, self.hidden_size, self.max_length = swarm, hidden_size, max_length
        self.timeout, self.max_retries, self.failover_wait_seconds = timeout, max_retries, failover_wait_seconds
        self.chain = RemoteChain(swarm.p2p, swarm.model_uid, hidden_size, max_length, push, timeout)
        self.position = 0
        self._inputs: list[torch.Tensor] = []  # what the first server received, for replays of span 0
        self.failovers: list[dict] = []  # what happened, for the caller's report

    @property
    def route(self) -> list[tuple[RouteSpan, ServerRecord]]:
        return [(c.span, c.record) for c in self.chain.connections]

    async def open(self) -> None:
        last_error: Exception | None = None
        for _ in range(self.max_retries + 1):
            route = await self.swarm.route(min_cache_tokens=self.max_length)
            try:
                self.chain.connections = await self.chain.open_spans(route, 0, None, None)
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
                try:
                    await self._recover(failure, position)
                except SpanFailure as again:  # a replacement failed too: the next attempt finds and replaces it
                    self.swarm.bans.ban(again.peer_id)
        for conn in self.chain.connections:
            self.swarm.bans.record_success(conn.span.peer_id)
        self._inputs.append(hidden)
        self.position += hidden.shape[1]
        await self._move_off_draining_servers()
        return output

    async def _move_off_draining_servers(self) -> None:
        """Move off servers that announced a drain; with no replica yet, keep using them and look again later."""
        now = time.monotonic()
        for conn in list(self.chain.connections):
            if conn.draining and now >= conn.retry_drain_at:
                # a server that shrank may still serve part of our span: only one that leaves is excluded
                exclude = set() if conn.drain_reason == "resize" else {conn.span.peer_id}
                try:
                    await self._replace(self.chain.connections.index(conn), self.position, reason=conn.drain_reason or "drain",
                                        exclude=exclude, wait_seconds=0.0)
                except SwarmError:
                    conn.retry_drain_at = now + DRAIN_RETRY_SECONDS  # it still serves us until it leaves

    async def _recover(self, failure: SpanFailure, position: int) -> None:
        self.swarm.bans.ban(failure.peer_id)
        await self._replace(failure.index, position, reason=failure.reason, exclude=set())

    async def _replace(self, index: int, position: int, *, reason: str, exclude: set[str], depth: int = 0,
                       wait_seconds: float | None = None) -> None:
        """Put other servers in place of chain[index], with their cache rebuilt up to `position`."""
        began = time.perf_counter()
        old = self.chain.connections[index]
        if reason not in ("resize",):
            exclude = exclude | {old.span.peer_id}
        deadline = time.monotonic() + (self.failover_wait_seconds if wait_seconds is None else wait_seconds)
        spans = await self._find_replacement(old.span, exclude, deadline)
        old.close()
        following = self.chain.connections[index + 1] if index + 1 < len(self.chain.connections) else None
        before = self.chain.connections[index - 1].span.peer_id if index > 0 else None
        for attempt in range(self.max_retries + 1):
            try:
                new = await self.chain.open_spans(spans, index, following, before)
                break
            except SpanFailure as failure:  # e.g. a dead server whose record has not expired yet
                self.swarm.bans.ban(failure.peer_id)
                exclude = exclude | {failure.peer_id}
                if attempt == self.max_retries:
                    raise SwarmError(f"no replacement for blocks {old.span.start_block}-{old.span.end_block - 1} "
                                     f"accepted a session: {failure}") from None
                spans = await self._find_replacement(old.span, exclude, deadline)
        self.chain.connections[index : index + 1] = new
        if position > 0:
            inputs = await self._inputs_of(index, position, depth)
            for offset, conn in enumerate(new):
                await self.chain.replay(conn, index + offset, inputs, self.timeout)
                if offset + 1 < len(new):
                    inputs = await self.chain.history(index + offset, position, self.timeout)
        await self.chain.relink(index)
        await self.chain.relink(index + len(new))
        self.failovers.append({
            "blocks": [old.span.start_block, old.span.end_block], "from": old.span.peer_id,
            "to": [c.span.peer_id for c in new], "reason": reason, "replayed_tokens": position,
            "seconds": round(time.perf_counter() - began, 4),
        })

    async def _find_replacement(self, span: RouteSpan, exclude: set[str], deadline: float):
        while True:
            try:
                return await self.swarm.replacement(span, self.max_length, exclude)
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
            if depth >= len(self.chain.connections):
                raise
            self.swarm.bans.ban(failure.peer_id)
            await self._replace(index - 1, position, reason=failure.reason, exclude=set(), depth=depth + 1)
            return await self.chain.history(index - 1, position, self.timeout)

    async def close(self) -> None:
        await self.chain.close()
