"""Which contiguous block range a server should host, and whether moving elsewhere is worth a reload.

Pure functions over the swarm's announcements (`ServerRecord`s). Only servers that are ONLINE or JOINING count as
covering their blocks (a JOINING one is loading and will serve soon); DRAINING and OFFLINE ones are leaving.
A peer announcing the same block twice (stale records) counts once for it, with its highest throughput.
Announced ranges that run past `total_blocks` are clipped to the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from potluck.core.numbers import require_int
from potluck.core.swarm.records import ServerRecord, ServerState

COVERING_STATES = frozenset({ServerState.ONLINE, ServerState.JOINING})
MIN_THROUGHPUT_IMPROVEMENT = 1.2  # a move must raise the swarm's slowest block's throughput by this factor


def coverage(total_blocks: int, records: Iterable[ServerRecord]) -> list[int]:
    """Number of distinct ONLINE/JOINING servers hosting each block."""
    return [len(hosts) for hosts in _hosts_per_block(total_blocks, records)]


def throughput_per_block(total_blocks: int, records: Iterable[ServerRecord]) -> list[float]:
    """Sum of announced throughputs (tokens/s) of the ONLINE/JOINING servers hosting each block."""
    return [sum(hosts.values()) for hosts in _hosts_per_block(total_blocks, records)]


def choose_blocks(
    num_blocks: int, total_blocks: int, records: Iterable[ServerRecord], self_peer_id: str | None = None
) -> tuple[int, int]:
    """The range [start, end) of `num_blocks` blocks whose hosting most strengthens the weakest part of the swarm.

    Each candidate window is scored by its blocks' (replicas, throughput) pairs sorted weakest first; the window
    with the smallest score wins. So a window holding a gap (0 replicas) beats one without, one holding more gaps
    beats one holding fewer, then fewest replicas, then lowest per-block throughput; equal scores go to the lowest
    start. `self_peer_id`'s own records are ignored, so a server re-choosing does not count itself.
    `num_blocks` above `total_blocks` is clipped to the whole model.
    """
    require_int("num_blocks", num_blocks, minimum=1)
    require_int("total_blocks", total_blocks, minimum=1)
    others = [r for r in _checked(records) if r.peer_id != self_peer_id]
    return _best_window(min(num_blocks, total_blocks), coverage(total_blocks, others),
                        throughput_per_block(total_blocks, others))


def should_move(
    self_peer_id: str,
    current_range: tuple[int, int],
    total_blocks: int,
    records: Iterable[ServerRecord],
    min_improvement: float = MIN_THROUGHPUT_IMPROVEMENT,
) -> tuple[int, int] | None:
    """A better range of the same size to move to, or None when moving would not clearly help.

    With this server's own records removed, the best window (`choose_blocks`) is compared with staying, each
    scenario adding this server back (with its announced throughput) at its range. Moving clearly helps when it:
      1. leaves fewer blocks with zero servers (fills a gap), or
      2. raises the swarm's minimum replica count over all blocks, or
      3. keeps that minimum and raises the swarm's minimum per-block throughput by `min_improvement` or more
         (not judged while that minimum is 0: some server is unmeasured, so no gain is clear yet).
    Never moves when a block it would give up (in the current range but not the new one) has no other ONLINE
    server (it would become a gap, or depend on a server still loading); blocks both ranges share stay covered by
    this server. Never returns the current range itself.
    """
    if not (isinstance(self_peer_id, str) and self_peer_id):
        raise ValueError(f"self_peer_id must be a non-empty string, got {self_peer_id!r}")
    require_int("total_blocks", total_blocks, minimum=1)
    start, end = _check_range(current_range, total_blocks)
    if isinstance(min_improvement, bool) or not (isinstance(min_improvement, (int, float)) and min_improvement >= 1.0):
        raise ValueError(f"min_improvement must be a number >= 1.0, got {min_improvement!r}")
    records = _checked(records)
    others = [r for r in records if r.peer_id != self_peer_id]
    online_others = [r for r in others if r.state is ServerState.ONLINE]
    target = choose_blocks(end - start, total_blocks, others)
    if target == (start, end):
        return None
    others_coverage = coverage(total_blocks, online_others)
    if any(others_coverage[b] == 0 for b in range(start, end) if not target[0] <= b < target[1]):
        return None
    self_throughput = max((r.throughput_tokens_per_second for r in records if r.peer_id == self_peer_id), default=0.0)
    stay = _with_self(total_blocks, others, self_peer_id, (start, end), self_throughput)
    move = _with_self(total_blocks, others, self_peer_id, target, self_throughput)
    stay_cov, move_cov = coverage(total_blocks, stay), coverage(total_blocks, move)
    if move_cov.count(0) != stay_cov.count(0):
        return target if move_cov.count(0) < stay_cov.count(0) else None
    if min(move_cov) != min(stay_cov):
        return target if min(move_cov) > min(stay_cov) else None
    stay_min = min(throughput_per_block(total_blocks, stay))
    move_min = min(throughput_per_block(total_blocks, move))
    if stay_min > 0 and move_min >= min_improvement * stay_min and move_min > stay_min:
        return target
    return None


def _best_window(num_blocks: int, replicas: Sequence[int], throughputs: Sequence[float]) -> tuple[int, int]:
    best_start, best_score = 0, None
    for start in range(len(replicas) - num_blocks + 1):
        score = sorted(zip(replicas[start:start + num_blocks], throughputs[start:start + num_blocks], strict=True))
        if best_score is None or score < best_score:  # strict: ties keep the lowest start
            best_start, best_score = start, score
    return best_start, best_start + num_blocks


def _hosts_per_block(total_blocks: int, records: Iterable[ServerRecord]) -> list[dict[str, float]]:
    require_int("total_blocks", total_blocks, minimum=1)
    hosts: list[dict[str, float]] = [{} for _ in range(total_blocks)]
    for record in _checked(records):
        if record.state not in COVERING_STATES:
            continue
        for block in range(record.start_block, min(record.end_block, total_blocks)):
            previous = hosts[block].get(record.peer_id, 0.0)
            hosts[block][record.peer_id] = max(previous, record.throughput_tokens_per_second)
    return hosts


def _with_self(
    total_blocks: int, others: list[ServerRecord], peer_id: str, block_range: tuple[int, int], throughput: float
) -> list[ServerRecord]:
    me = ServerRecord(peer_id=peer_id, start_block=block_range[0], end_block=min(block_range[1], total_blocks),
                      throughput_tokens_per_second=throughput)
    return [*others, me]


def _checked(records: Iterable[ServerRecord]) -> list[ServerRecord]:
    records = list(records)
    for record in records:
        if not isinstance(record, ServerRecord):
            raise ValueError(f"records must be ServerRecord, got {type(record).__name__}")
    return records


def _check_range(block_range: tuple[int, int], total_blocks: int) -> tuple[int, int]:
    try:
        start, end = block_range
    except (TypeError, ValueError):
        raise ValueError(f"range must be a (start, end) pair, got {block_range!r}") from None
    require_int("range start", start, minimum=0)
    require_int("range end", end, minimum=0)
    if not start < end <= total_blocks:
        raise ValueError(f"range {start}:{end} must satisfy 0 <= start < end <= total_blocks ({total_blocks})")
    return start, end
