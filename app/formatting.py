"""Numbers and states in plain words, for labels and the tray: pure functions, tested with tables."""

from __future__ import annotations

from potluck.core.numbers import format_bytes  # one unit system everywhere (binary: KiB, MiB, GiB)
from potluck.core.protocol import NodeState, Stats

__all__ = ["format_bytes", "format_duration", "format_count", "block_range", "friends_online", "friends_known",
           "status_line", "member_state_text", "last_seen_text"]

def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def format_count(count: int) -> str:
    """12345 -> '12,345'; 2_400_000 -> '2.4 M'."""
    if count >= 10_000_000:
        return f"{count / 1_000_000:.1f} M"
    return f"{count:,}"


def block_range(start_block: int, end_block: int) -> str:
    """Blocks [12, 24) read as '12–23' (people count the blocks they have, both ends included)."""
    if end_block <= start_block:
        return "none"
    if end_block - start_block == 1:
        return str(start_block)
    return f"{start_block}–{end_block - 1}"


def friends_online(stats: Stats | None) -> int:
    """Other members online (this PC not counted)."""
    if stats is None:
        return 0
    return sum(1 for m in stats.members if m.online and m.peer_id != stats.peer_id)


def friends_known(stats: Stats | None) -> bool:
    """Whether any other member was ever seen (then nobody online is "no friends online", not "…yet")."""
    return stats is not None and any(m.peer_id != stats.peer_id for m in stats.members)


def _friends_text(count: int, known: bool = False) -> str:
    if count == 0:
        return "no friends online" if known else "no friends online yet"
    return "1 friend online" if count == 1 else f"{count} friends online"


def status_line(state: NodeState, stats: Stats | None, detail: str = "") -> str:
    """The tray menu's first line, e.g. 'Serving blocks 12–23 of 80 · 3 friends online'."""
    friends = _friends_text(friends_online(stats), friends_known(stats))
    if state is NodeState.SERVING:
        if stats is not None and stats.end_block > stats.start_block:
            blocks = block_range(stats.start_block, stats.end_block)
            return f"Serving blocks {blocks} of {stats.total_blocks} · {friends}"
        return f"Serving · {friends}"
    if state is NodeState.PAUSED:  # a serving rule's words ("Paused until 18:00 (outside the schedule)") if any
        paused = detail if detail.startswith("Paused") and detail != "Paused by you" else "Paused"
        return f"{paused} · {friends}"
    if state is NodeState.DRAINING:
        active = stats.active_sessions if stats is not None else 0
        if active:
            return f"Finishing {active} conversation{'s' if active != 1 else ''} before pausing"
        return "Finishing conversations before pausing"
    if state is NodeState.STARTING:
        return detail or "Starting…"
    if state is NodeState.STOPPING:
        return "Stopping…"
    if state is NodeState.FAILED:
        return "Stopped by an error"
    return "Not serving"


def member_state_text(state: str, online: bool) -> str:
    if not online:
        return "Offline"
    words = {"online": "Serving", "joining": "Joining", "draining": "Finishing up", "offline": "Offline"}
    return words.get(state, state.capitalize())


def last_seen_text(last_seen: float, now: float) -> str:
    """When a member was last seen online: 'now', '4 min ago', '3 h 0 min ago', 'never'."""
    if last_seen <= 0:
        return "never"
    ago = now - last_seen
    return "now" if ago < 60 else f"{format_duration(ago)} ago"
