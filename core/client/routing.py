"""The chain of servers a token's hidden state travels through: the fastest expected route over the swarm.

Pure functions over the swarm's announcements (`ServerRecord`s) and the client's latency measurements.

Expected time per token of a route, in milliseconds:

    sum over its spans of  latency_ms[peer]  +  num_blocks * 1000 / throughput_tokens_per_second

Each span is one hop: the link latency of the peer it enters (the client's measurement stands in for the
server-to-server link of a push). A server may serve any sub-range of its announced range. The cheapest route is
found by dynamic programming over block boundaries (the graph is a DAG: spans only go forward).

A client on a PC that serves blocks itself (`self_peer_id`, the node's chat) first routes as many blocks as it can
through its own server, then minimises the time: those blocks cross no network, the conversation stays on this PC
(entirely, when it hosts every block), and friends' PCs are left to friends. Its own server is reached in-process,
so its link latency is 0, whatever a ping through two event loops measured; and the servers' throughputs, one-off
measurements at start that differ up to 3x between runs on a busy PC, no longer decide between this PC and a
friend that both host the blocks.

Servers in `avoid` (suspects: this PC's spot checks caught them computing wrong, core/client/spot_checks.py) are
used only where nothing else serves their blocks: routes with fewer blocks on avoided servers come before every
other consideration. Unlike `banned`, an avoided server still keeps a block reachable that no one else hosts.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from potluck.core.numbers import require_int
from potluck.core.swarm.records import ServerRecord, ServerState

UNMEASURED_MS_PER_BLOCK = 1000.0  # compute time assumed per block for a server announcing throughput 0
NO_LATENCIES: Mapping[str, float] = MappingProxyType({})  # immutable default: every peer gets the default
_TIE_TOLERANCE = 1e-9  # relative; expected times this close are equal, then fewer hops win


class NoRouteError(LookupError):
    """Some block in the requested range has no usable server; `block` is the first such block."""

    def __init__(self, message: str, block: int) -> None:
        super().__init__(message)
        self.block = block


@dataclass(frozen=True)
class RouteSpan:
    peer_id: str  # server that computes this span
    start_block: int  # first block it computes (inclusive)
    end_block: int  # one past the last block it computes

    def __post_init__(self) -> None:
        if not (isinstance(self.peer_id, str) and self.peer_id):
            raise ValueError(f"peer_id must be a non-empty string, got {self.peer_id!r}")
        require_int("start_block", self.start_block, minimum=0)
        require_int("end_block", self.end_block, minimum=0)
        if self.start_block >= self.end_block:
            raise ValueError(f"span {self.start_block}:{self.end_block} is empty or reversed")

    @property
    def num_blocks(self) -> int:
        return self.end_block - self.start_block


def choose_route(
    records: Iterable[ServerRecord],
    total_blocks: int,
    *,
    start_block: int = 0,
    end_block: int | None = None,
    latency_ms: Mapping[str, float] = NO_LATENCIES,
    default_latency_ms: float = 50.0,
    banned: Collection[str] = (),
    min_cache_tokens: int = 0,
    self_peer_id: str | None = None,
    avoid: Collection[str] = (),
) -> list[RouteSpan]:
    """The chain of spans covering [start_block, end_block) with the lowest expected time per token.

    Usable servers are ONLINE, not in `banned`, and announce `cache_tokens_left >= min_cache_tokens`. Routes with
    fewer blocks on servers in `avoid` come first, then (with `self_peer_id`, this node's own server, whose latency
    is always 0) routes with fewer blocks away from this PC (see the module doc). A peer missing from `latency_ms`
    gets `default_latency_ms`. Ties in expected time (within a
    relative 1e-9) go to fewer hops, then to the route whose sequence of (peer_id, longest span first) sorts
    lowest, so the same inputs always give the same route.
    Raises NoRouteError naming the first block no usable server hosts.
    """
    require_int("total_blocks", total_blocks, minimum=1)
    end_block = total_blocks if end_block is None else end_block
    require_int("start_block", start_block, minimum=0)
    require_int("end_block", end_block, minimum=0)
    if not start_block < end_block <= total_blocks:
        raise ValueError(f"range {start_block}:{end_block} must satisfy 0 <= start < end <= total_blocks "
                         f"({total_blocks})")
    _check_latency("default_latency_ms", default_latency_ms)
    for peer, value in latency_ms.items():
        _check_latency(f"latency_ms[{peer!r}]", value)
    require_int("min_cache_tokens", min_cache_tokens, minimum=0)
    if isinstance(banned, str):
        raise ValueError("banned must be a collection of peer ids, not one string")
    if isinstance(avoid, str):
        raise ValueError("avoid must be a collection of peer ids, not one string")
    avoid_set = frozenset(avoid)
    records = list(records)
    for record in records:
        if not isinstance(record, ServerRecord):
            raise ValueError(f"records must be ServerRecord, got {type(record).__name__}")
    banned_set = frozenset(banned)
    usable = [r for r in records if r.state is ServerState.ONLINE and r.peer_id not in banned_set
              and r.cache_tokens_left >= min_cache_tokens and r.start_block < end_block and r.end_block > start_block]

    def hop_latency_ms(peer_id: str) -> float:
        if peer_id == self_peer_id:
            return 0.0
        return float(latency_ms.get(peer_id, default_latency_ms))

    # best[b] = (blocks on avoided servers, blocks away from self_peer_id, expected ms, hops, spans as (peer_id,
    # start, end)) of the best route covering [start_block, b)
    best: dict[int, tuple[int, int, float, int, tuple[tuple[str, int, int], ...]]] = {start_block: (0, 0, 0.0, 0, ())}
    for boundary in range(start_block, end_block):
        if boundary not in best:
            continue
        avoided, away, cost_ms, hops, spans = best[boundary]
        for record in usable:
            if not record.start_block <= boundary < record.end_block:
                continue
            entry_ms = cost_ms + hop_latency_ms(record.peer_id)
            per_block_ms = _ms_per_block(record)
            elsewhere = record.peer_id != self_peer_id
            suspect = record.peer_id in avoid_set
            for stop in range(boundary + 1, min(record.end_block, end_block) + 1):
                blocks = stop - boundary
                candidate = (avoided + suspect * blocks, away + elsewhere * blocks, entry_ms + blocks * per_block_ms,
                             hops + 1, (*spans, (record.peer_id, boundary, stop)))
                if stop not in best or _better(candidate, best[stop]):
                    best[stop] = candidate
    if end_block not in best:
        raise _no_route(records, start_block, end_block, usable, banned_set, min_cache_tokens)
    return [RouteSpan(peer_id, start, stop) for peer_id, start, stop in best[end_block][4]]


def replacement_route(
    records: Iterable[ServerRecord],
    total_blocks: int,
    failed_span: RouteSpan,
    banned: Collection[str] = (),
    *,
    failed_peer_may_stay: bool = False,
    latency_ms: Mapping[str, float] = NO_LATENCIES,
    default_latency_ms: float = 50.0,
    min_cache_tokens: int = 0,
    self_peer_id: str | None = None,
    avoid: Collection[str] = (),
) -> list[RouteSpan]:
    """A route covering exactly the failed span's blocks. The failed peer is banned here too, unless
    `failed_peer_may_stay` (a server that shrank its range may still serve part of the span). `avoid` as in
    choose_route."""
    if not isinstance(failed_span, RouteSpan):
        raise ValueError(f"failed_span must be a RouteSpan, got {type(failed_span).__name__}")
    if isinstance(banned, str):
        raise ValueError("banned must be a collection of peer ids, not one string")
    banned = set(banned) if failed_peer_may_stay else {*banned, failed_span.peer_id}
    return choose_route(
        records, total_blocks, start_block=failed_span.start_block, end_block=failed_span.end_block,
        latency_ms=latency_ms, default_latency_ms=default_latency_ms, banned=banned,
        min_cache_tokens=min_cache_tokens, self_peer_id=self_peer_id, avoid=avoid,
    )


def precision_of(compute: str) -> str:
    """The weight precision in a compute name: "float32+int4" -> "int4", "bfloat16" -> "none"."""
    return compute.split("+", 1)[1] if "+" in compute else "none"


def choose_compute(records: Iterable[ServerRecord], total_blocks: int, precision: str | None = None) -> str:
    """The compute name ("bfloat16", "float32+int4", …) to route through: among the ONLINE servers of weight
    `precision` (any when None), the name whose servers cover every block; among several, the one with the most
    servers, then the name sorting first. With none covering every block, the one covering the most blocks
    (routing then names the missing block)."""
    require_int("total_blocks", total_blocks, minimum=1)
    groups: dict[str, list[ServerRecord]] = {}
    for record in records:
        if record.state is ServerState.ONLINE and precision in (None, precision_of(record.compute)):
            groups.setdefault(record.compute, []).append(record)
    if not groups:
        wanted = f" at precision {precision}" if precision else ""
        raise NoRouteError(f"no online server{wanted} hosts block 0", 0)

    def covered(group: list[ServerRecord]) -> int:
        return sum(any(r.hosts(b) for r in group) for b in range(total_blocks))

    return min(groups, key=lambda name: (-covered(groups[name]), -len({r.peer_id for r in groups[name]}), name))


def _ms_per_block(record: ServerRecord) -> float:
    if record.throughput_tokens_per_second > 0:
        return 1000.0 / record.throughput_tokens_per_second
    return UNMEASURED_MS_PER_BLOCK


def _better(candidate: tuple[int, int, float, int, tuple], incumbent: tuple[int, int, float, int, tuple]) -> bool:
    avoided_a, away_a, cost_a, hops_a, spans_a = candidate
    avoided_b, away_b, cost_b, hops_b, spans_b = incumbent
    if avoided_a != avoided_b:
        return avoided_a < avoided_b
    if away_a != away_b:
        return away_a < away_b
    if not math.isclose(cost_a, cost_b, rel_tol=_TIE_TOLERANCE, abs_tol=_TIE_TOLERANCE):
        return cost_a < cost_b
    if hops_a != hops_b:
        return hops_a < hops_b
    return _tie_key(spans_a) < _tie_key(spans_b)


def _tie_key(spans: tuple[tuple[str, int, int], ...]) -> list[tuple[str, int]]:
    # lowest peer ids first; for the same peer, the span reaching furthest first
    return [(peer_id, -stop) for peer_id, _, stop in spans]


def _no_route(
    records: list[ServerRecord], start_block: int, end_block: int, usable: list[ServerRecord],
    banned: frozenset[str], min_cache_tokens: int,
) -> NoRouteError:
    block = next(b for b in range(start_block, end_block) if not any(r.hosts(b) for r in usable))
    skipped: dict[str, int] = {}
    for record in records:
        if not record.hosts(block):
            continue
        if record.state is not ServerState.ONLINE:
            reason = record.state.value
        elif record.peer_id in banned:
            reason = "banned"
        else:
            reason = f"without room for {min_cache_tokens} cache tokens"
        skipped[reason] = skipped.get(reason, 0) + 1
    detail = f" (skipped {', '.join(f'{n} {reason}' for reason, n in sorted(skipped.items()))})" if skipped else ""
    return NoRouteError(f"no online server hosts block {block}{detail}", block)


def _check_latency(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 ms, got {value!r}")
