"""What a client knows of the swarm for one model: the servers' records, its bans, the suspects its spot checks
found (core/client/suspects.py), the round trips it measured, and the routes it takes from them
(core/client/routing.py decides; this module gathers the inputs)."""

from __future__ import annotations

import asyncio
import time

from potluck.core.client.backoff import BanList
from potluck.core.client.routing import NoRouteError, RouteSpan, choose_compute, choose_route, replacement_route
from potluck.core.client.suspects import SuspectList
from potluck.core.errors import PotluckError
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.records import ServerRecord, unique_servers
from potluck.core.swarm.streams import PING_PROTOCOL, close_writer, open_stream
from potluck.core.wire import control, framing

LATENCY_TTL_SECONDS = 60.0  # a measured round trip is trusted this long
PING_TIMEOUT_SECONDS = 2.0
ROUTE_ATTEMPTS = 3  # reads of the DHT before a first route gives up (see SwarmView.route)
ROUTE_RETRY_SECONDS = 1.0
UNREACHABLE_LATENCY_MS = 5_000.0  # a server that does not answer a ping is routed through only as a last resort

Hop = tuple[RouteSpan, ServerRecord]  # one span of a route and the record of the server that runs it


class SwarmError(PotluckError, RuntimeError):
    """The swarm cannot serve this request right now; the message says which blocks are missing or why."""


class SwarmView:
    def __init__(self, dht, p2p, model_uid: str, num_blocks: int, *, bans: BanList | None = None,
                 self_peer_id: str | None = None, precision: str | None = None, suspects: SuspectList | None = None):
        self.dht, self.p2p, self.model_uid, self.num_blocks = dht, p2p, model_uid, num_blocks
        self.suspects = suspects if suspects is not None else SuspectList()  # avoided where others serve their blocks
        self.precision = precision  # weight precision to route through (none/int8/int4); None: what servers announce
        self.compute: str | None = None  # the servers' compute name, decided on the first route, then kept
        self.bans = bans or BanList()
        self.latency_ms: dict[str, float] = {}  # round trip to each server, ms (what routing minimises)
        self._measured_at: dict[str, float] = {}
        self._pinned: set[str] = set()
        self.self_peer_id = self_peer_id  # this PC's own server, reached without the network

    async def records(self, start: int = 0, end: int | None = None) -> dict[str, ServerRecord]:
        """Servers of the model that compute in this view's compute name (decided on first use when not given, so
        every later route and replacement computes the same numbers)."""
        end = self.num_blocks if end is None else end
        by_block = await swarm_dht.fetch_records(self.dht, self.model_uid, range(start, end))
        servers = unique_servers(by_block)
        if self.compute is None:
            try:
                self.compute = choose_compute(servers, self.num_blocks, self.precision)
            except NoRouteError as e:
                raise SwarmError(f"the swarm cannot run {self.model_uid} right now: {e}") from None
        return {r.peer_id: r for r in servers if r.compute == self.compute}

    async def measure_latencies(self, records: dict[str, ServerRecord]) -> None:
        """Ping servers not measured in the last LATENCY_TTL_SECONDS (in parallel); keep round trips in ms. This
        PC's own server is not pinged: it is reached in-process (routing counts no latency for it)."""
        now = time.monotonic()
        stale = [r for r in records.values() if now - self._measured_at.get(r.peer_id, -1e9) > LATENCY_TTL_SECONDS
                 and r.peer_id not in self._pinned and r.peer_id != self.self_peer_id]
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
                await framing.send(writer, control.encode(control.Ping()))
                await asyncio.wait_for(framing.receive(reader), PING_TIMEOUT_SECONDS)
                rtts.append((time.perf_counter() - began) * 1000)
            return min(rtts)
        finally:
            close_writer(writer)

    def pin_latency(self, latencies: dict[str, float]) -> None:
        """Use these latencies instead of measuring (tests, or a user's preference for some servers)."""
        self.latency_ms.update(latencies)
        self._pinned.update(latencies)

    async def route(self, min_cache_tokens: int = 0, start_block: int = 0, end_block: int | None = None) -> list[Hop]:
        """The fastest chain over blocks [start_block, end_block) (default: the whole model), through servers with
        room for `min_cache_tokens`, around suspects where others serve their blocks.

        With no chain, the DHT is read again ROUTE_ATTEMPTS times in all, ROUTE_RETRY_SECONDS apart, before giving
        up: a freshly started client's DHT may not have reached every record yet, and a server that just came back
        announces within seconds."""
        for _ in range(ROUTE_ATTEMPTS - 1):
            try:
                return await self._route_once(min_cache_tokens, start_block, end_block)
            except SwarmError:
                await asyncio.sleep(ROUTE_RETRY_SECONDS)
        return await self._route_once(min_cache_tokens, start_block, end_block)

    async def _route_once(self, min_cache_tokens: int, start_block: int, end_block: int | None) -> list[Hop]:
        records = await self.records()
        await self.measure_latencies(records)
        try:
            spans = choose_route(records.values(), self.num_blocks, start_block=start_block, end_block=end_block,
                                 latency_ms=self.latency_ms, banned=self.bans.banned_peers(),
                                 min_cache_tokens=min_cache_tokens, self_peer_id=self.self_peer_id,
                                 avoid=self.suspects.peers())
        except NoRouteError as e:
            raise SwarmError(f"the swarm cannot run {self.model_uid} right now: {e}") from None
        return [(span, records[span.peer_id]) for span in spans]

    async def replacement(self, failed: RouteSpan, min_cache_tokens: int, *, failed_peer_may_stay: bool = False,
                          exclude: frozenset[str] = frozenset()) -> list[Hop]:
        """Servers for exactly the failed span's blocks (raises NoRouteError when there are none yet)."""
        records = await self.records(failed.start_block, failed.end_block)
        spans = replacement_route(records.values(), self.num_blocks, failed, self.bans.banned_peers() | exclude,
                                  failed_peer_may_stay=failed_peer_may_stay, latency_ms=self.latency_ms,
                                  min_cache_tokens=min_cache_tokens, self_peer_id=self.self_peer_id,
                                  avoid=self.suspects.peers())
        return [(span, records[span.peer_id]) for span in spans]
