"""What the node reports to the GUI, computed from data: stats, members, coverage alerts, words for block ranges.

Pure functions over records and counters (no I/O, no torch, no hivemind), tested with tables in
tests/node/test_stats.py. The control loop gathers the inputs; these decide what the owner sees.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from potluck.core import protocol
from potluck.core.protocol import AlertLevel, NodeState
from potluck.core.swarm.records import ServerRecord, ServerState, online_per_block, unique_servers

# How this PC appears in its own member list while it is not serving (the GUI capitalises unknown words).
_SELF_STATE = {
    NodeState.SERVING: ServerState.ONLINE.value,
    NodeState.STARTING: ServerState.JOINING.value,
    NodeState.DRAINING: ServerState.DRAINING.value,
    NodeState.STOPPING: ServerState.OFFLINE.value,
    NodeState.PAUSED: "paused",
    NodeState.STOPPED: "stopped",
    NodeState.FAILED: "failed",
}



# ---------------------------------------------------------------------------------------------- words


def block_runs(blocks: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted distinct blocks merged into runs of consecutive blocks, both ends included: [3,4,5,9] -> [(3,5),(9,9)]."""
    runs: list[tuple[int, int]] = []
    for block in sorted(set(blocks)):
        if runs and runs[-1][1] == block - 1:
            runs[-1] = (runs[-1][0], block)
        else:
            runs.append((block, block))
    return runs


def blocks_words(blocks: Iterable[int]) -> str:
    """'Block 12', 'Blocks 12–15', 'Blocks 3, 7–9' (people count blocks with both ends included)."""
    runs = block_runs(blocks)
    if not runs:
        return "No blocks"
    parts = [str(a) if a == b else f"{a}–{b}" for a, b in runs]
    single = len(runs) == 1 and runs[0][0] == runs[0][1]
    return ("Block " if single else "Blocks ") + ", ".join(parts)


def span_words(start_block: int, end_block: int) -> str:
    """The hosted range [start, end) in words: 'blocks 12–23', 'block 12', 'no blocks'."""
    if end_block <= start_block:
        return "no blocks"
    return blocks_words(range(start_block, end_block)).lower()


def _verb(blocks: Sequence[int], one: str, many: str) -> str:
    return one if len(blocks) == 1 else many


# ---------------------------------------------------------------------------------------------- alerts


def coverage_alerts(previous: Sequence[int] | None, current: Sequence[int]) -> list[protocol.Alert]:
    """Alerts for what changed between two coverage lists (servers per block), at most one per level.

    critical: blocks that now have no server (on the first look, every block without one);
    warning: blocks that went from two or more servers down to one;
    info: blocks that had no server and have one again.
    Nothing is repeated while coverage stays the same. A list of another length (another model) counts as a
    first look.
    """
    if previous is not None and len(previous) != len(current):
        previous = None
    gone = [b for b, n in enumerate(current) if n == 0 and (previous is None or previous[b] > 0)]
    thin = [b for b, n in enumerate(current) if n == 1 and previous is not None and previous[b] >= 2]
    back = [b for b, n in enumerate(current) if n > 0 and previous is not None and previous[b] == 0]
    alerts = []
    if gone:
        alerts.append(protocol.Alert(level=AlertLevel.CRITICAL, blocks=tuple(gone),
                                     text=f"{blocks_words(gone)} {_verb(gone, 'has', 'have')} no server left"))
    if thin:
        alerts.append(protocol.Alert(level=AlertLevel.WARNING, blocks=tuple(thin),
                                     text=f"{blocks_words(thin)} {_verb(thin, 'has', 'have')} only one server left"))
    if back:
        alerts.append(protocol.Alert(level=AlertLevel.INFO, blocks=tuple(back),
                                     text=f"{blocks_words(back)} {_verb(back, 'is', 'are')} served again"))
    return alerts


# ---------------------------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class Me:
    """This PC as its own member list shows it."""

    peer_id: str
    name: str
    state: NodeState
    start_block: int = 0  # hosted [start, end) while serving; equal otherwise
    end_block: int = 0


@dataclass(frozen=True)
class Contribution:
    """This PC's serving counters, summed over every serving period of this node process."""

    start_block: int = 0  # hosted now: [start_block, end_block); equal when not serving
    end_block: int = 0
    tokens_served: int = 0
    tokens_for_others: int = 0  # of tokens_served, those for other members' chats (not this PC's own)
    sessions_served: int = 0
    active_sessions: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    uptime_seconds: float = 0.0  # time spent serving
    block_tokens_per_second: float = 0.0  # measured decode speed of one hosted block (0 when not serving)

    def plus(self, other: Contribution) -> Contribution:
        """Totals of a finished serving period (`self`) and the current one (`other`, whose range and speed win)."""
        return Contribution(
            start_block=other.start_block, end_block=other.end_block,
            tokens_served=self.tokens_served + other.tokens_served,
            tokens_for_others=self.tokens_for_others + other.tokens_for_others,
            sessions_served=self.sessions_served + other.sessions_served,
            active_sessions=other.active_sessions,
            bytes_up=self.bytes_up + other.bytes_up, bytes_down=self.bytes_down + other.bytes_down,
            uptime_seconds=self.uptime_seconds + other.uptime_seconds,
            block_tokens_per_second=other.block_tokens_per_second,
        )


def throughput_tokens_per_second(block_tokens_per_second: float, num_blocks: int) -> float:
    """Tokens per second one pass through all of this PC's blocks sustains (a hop costs every block it holds)."""
    if num_blocks <= 0 or block_tokens_per_second <= 0:
        return 0.0
    return block_tokens_per_second / num_blocks


@dataclass(frozen=True)
class Presence:
    """A node's own announcement that it runs (core/node/presence.py), serving or not: what makes a paused friend
    count as online on every PC alike."""

    peer_id: str
    name: str
    state: str  # the node's state: serving, paused, starting, draining, stopped, failed (stopping: leaving)


def members(records: Iterable[ServerRecord], me: Me | None, presence: Iterable[Presence] = (),
            remembered: Mapping[str, tuple[str, float]] | None = None, now: float = 0.0,
            suspects: Collection[str] = ()) -> tuple[protocol.Member, ...]:
    """Everyone this PC knows in the swarm, one entry per peer, this PC first as its node state says.

    A peer is online when it announces a server record that is not offline, or its presence (a paused PC has no
    blocks but is there): every PC applies the same rule to the same announcements, so two PCs agree on who is
    online. Peers seen before (`remembered`: peer id -> (name, last seen unix seconds)) stay listed, offline, with
    when they were last seen. Online peers are seen `now`. Peers in `suspects` (this PC's spot checks caught them
    computing wrong, core/client/suspects.py) are flagged `suspect`; this PC never is."""
    out: dict[str, protocol.Member] = {}
    own = me.peer_id if me is not None else None
    for record in records:
        if record.peer_id in out or record.peer_id == own:
            continue
        online = record.state is not ServerState.OFFLINE
        out[record.peer_id] = protocol.Member(peer_id=record.peer_id, name=record.name, state=record.state.value,
                                              start_block=record.start_block, end_block=record.end_block,
                                              online=online, last_seen=now if online else 0.0)
    for item in presence:
        known = out.get(item.peer_id)
        if item.peer_id == own or (known is not None and known.online) or item.state == "stopping":
            continue
        out[item.peer_id] = protocol.Member(peer_id=item.peer_id, name=item.name or (known.name if known else ""),
                                            state=item.state, start_block=0, end_block=0, online=True, last_seen=now)
    for peer_id, (name, last_seen) in (remembered or {}).items():
        known = out.get(peer_id)
        if peer_id == own or (known is not None and known.online):
            continue
        out[peer_id] = protocol.Member(peer_id=peer_id, name=(known.name if known else "") or name,
                                       state=ServerState.OFFLINE.value, start_block=0, end_block=0, online=False,
                                       last_seen=max(0.0, last_seen))
    listed = list(out.values())
    if me is not None:
        serving = me.state in (NodeState.SERVING, NodeState.DRAINING)
        start, end = (me.start_block, me.end_block) if serving else (0, 0)
        online = me.state is not NodeState.STOPPING
        listed.insert(0, protocol.Member(peer_id=me.peer_id, name=me.name, state=_SELF_STATE[me.state],
                                         start_block=start, end_block=end, online=online,
                                         last_seen=now if online else 0.0))
    flagged = set(suspects) - {own}
    return tuple(dataclasses.replace(m, suspect=True) if m.peer_id in flagged else m for m in listed)


class RateWindow:
    """A steady rate from a growing counter: (count now - count a minute ago) / the time between.

    Tokens per second measured per 2-s stats period jump between bursts and silence; over the last minute they
    read as what this PC really does. A counter that goes down (a new serving period) starts afresh."""

    def __init__(self, window_seconds: float = 60.0):
        self.window_seconds = window_seconds
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, monotonic: float, count: int) -> float:
        """Note the counter at `monotonic`; returns the rate per second over (about) the last window."""
        if self._samples and count < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((monotonic, count))
        while len(self._samples) > 2 and self._samples[1][0] <= monotonic - self.window_seconds:
            self._samples.popleft()  # keep one sample at or before the window's start
        first_monotonic, first_count = self._samples[0]
        span = monotonic - first_monotonic
        return (count - first_count) / span if span > 0 else 0.0


def build_stats(
    contribution: Contribution,
    *,
    total_blocks: int,
    memory_used_bytes: int,
    memory_free_bytes: int,
    tokens_used: int,
    by_block: dict[int, list[ServerRecord]] | None,
    me: Me | None,
    presence: Iterable[Presence] = (),
    remembered: Mapping[str, tuple[str, float]] | None = None,
    now: float = 0.0,
    served_tokens_per_second: float = 0.0,
    memory_blocks_bytes: int = 0,
    memory_chat_bytes: int = 0,
    month_bytes_up: int = 0,
    suspects: Collection[str] = (),
) -> protocol.Stats:
    """One stats event. `by_block` is the swarm's records for the model (None before the swarm was read);
    `presence`, `remembered`, `now` and `suspects` as `members` takes them; the rest passes through."""
    hosted = contribution.end_block - contribution.start_block
    return protocol.Stats(
        start_block=contribution.start_block,
        end_block=contribution.end_block,
        total_blocks=total_blocks,
        tokens_served=contribution.tokens_served,
        sessions_served=contribution.sessions_served,
        active_sessions=contribution.active_sessions,
        uptime_seconds=round(contribution.uptime_seconds, 1),
        bytes_up=contribution.bytes_up,
        bytes_down=contribution.bytes_down,
        memory_used_bytes=max(0, memory_used_bytes),
        memory_free_bytes=max(0, memory_free_bytes),
        throughput_tokens_per_second=round(
            throughput_tokens_per_second(contribution.block_tokens_per_second, hosted), 2),
        tokens_used=tokens_used,
        members=members(unique_servers(by_block) if by_block is not None else (), me, presence, remembered, now,
                        suspects),
        coverage=online_per_block(total_blocks, by_block) if by_block is not None else (),
        peer_id=me.peer_id if me is not None else "",
        tokens_for_others=contribution.tokens_for_others,
        served_tokens_per_second=round(max(0.0, served_tokens_per_second), 2),
        memory_blocks_bytes=max(0, memory_blocks_bytes),
        memory_chat_bytes=max(0, memory_chat_bytes),
        month_bytes_up=max(0, month_bytes_up),
    )


# ---------------------------------------------------------------------------------------------- chat


def sampling_kwargs(cmd: protocol.Generate) -> dict:
    """DistributedModelForCausalLM.generate keyword arguments for a generate command; temperature 0 is greedy."""
    kwargs: dict = {"max_new_tokens": cmd.max_new_tokens, "repetition_penalty": cmd.repetition_penalty}
    if cmd.temperature > 0:
        kwargs.update(do_sample=True, temperature=cmd.temperature, top_p=cmd.top_p, top_k=cmd.top_k, seed=cmd.seed)
    else:
        kwargs.update(do_sample=False)
    return kwargs


class TextStream:
    """The text each streamed token adds, from the whole reply decoded so far.

    A character split over several tokens decodes as U+FFFD until its last byte arrives; those trailing marks are
    held back (the token's text is then empty, as the protocol allows), so a streamed reply never shows a mark that
    the finished reply does not have. A mark followed by more text is real (invalid bytes) and is sent."""

    def __init__(self) -> None:
        self.sent = ""

    def feed(self, decoded: str) -> str:
        stable = decoded.rstrip("\ufffd")
        piece = stable[len(self.sent):]  # (should a decoder rewrite earlier text, `done` carries the right reply)
        self.sent += piece
        return piece
