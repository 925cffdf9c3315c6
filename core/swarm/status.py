"""What `potluck status` and the dashboard show about a model's coverage: pure functions over records.

`suspects` (peer id -> what was found) are the servers this PC's spot checks caught computing wrong
(core/client/suspects.py keeps them in this PC's file; `read_suspects()` there gives the mapping's values):
they are flagged on their lines, warned about, and routing on this PC avoids them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from potluck.core.swarm.records import ServerRecord, ServerState, online_per_block


@dataclass(frozen=True)
class BlockGroup:
    start_block: int
    end_block: int  # exclusive
    servers: tuple[ServerRecord, ...]  # every announced server for these blocks, any state

    @property
    def online(self) -> int:
        return sum(1 for s in self.servers if s.state is ServerState.ONLINE)


def group_blocks(num_blocks: int, by_block: dict[int, list[ServerRecord]]) -> list[BlockGroup]:
    """Consecutive blocks with the same set of servers, merged into one row."""
    groups: list[BlockGroup] = []
    for block in range(num_blocks):
        servers = tuple(sorted(by_block.get(block, []), key=lambda r: r.peer_id))
        key = tuple((s.peer_id, s.state) for s in servers)
        if groups and tuple((s.peer_id, s.state) for s in groups[-1].servers) == key:
            groups[-1] = BlockGroup(groups[-1].start_block, block + 1, groups[-1].servers)
        else:
            groups.append(BlockGroup(block, block + 1, servers))
    return groups


def replica_warnings(groups: list[BlockGroup]) -> list[str]:
    warnings = []
    for g in groups:
        where = f"block {g.start_block}" if g.end_block - g.start_block == 1 else f"blocks {g.start_block}-{g.end_block - 1}"
        if g.online == 0:
            warnings.append(f"{where}: no server online — the model cannot run")
        elif g.online == 1:
            warnings.append(f"{where}: only one server — if it leaves, generation stops until another joins")
    return warnings


def suspect_warnings(groups: list[BlockGroup], suspects: Mapping[str, str]) -> list[str]:
    """One line per suspect that serves blocks of this model, in the order they first appear."""
    seen: dict[str, ServerRecord] = {}
    for g in groups:
        for s in g.servers:
            if s.peer_id in suspects and s.peer_id not in seen:
                seen[s.peer_id] = s
    return [f"{(s.name + ' ') if s.name else ''}({peer[-8:]}) is a suspect: {suspects[peer] or 'a spot check found wrong results'}"
            f" (this PC routes around it)" for peer, s in seen.items()]


def status_json(model_uid: str, num_blocks: int, by_block: dict[int, list[ServerRecord]],
                suspects: Mapping[str, str] | None = None) -> dict:
    suspects = suspects or {}
    groups = group_blocks(num_blocks, by_block)
    return {
        "model": model_uid,
        "num_blocks": num_blocks,
        "coverage": list(online_per_block(num_blocks, by_block)),
        "blocks": [
            {"start_block": g.start_block, "end_block": g.end_block,
             "servers": [{"peer_id": s.peer_id, "name": s.name, "state": s.state.value,
                          "throughput_tokens_per_second": s.throughput_tokens_per_second,
                          "cache_tokens_left": s.cache_tokens_left, "start_block": s.start_block,
                          "end_block": s.end_block, "suspect": s.peer_id in suspects} for s in g.servers]}
            for g in groups
        ],
        "warnings": replica_warnings(groups) + suspect_warnings(groups, suspects),
    }


def status_text(model_uid: str, num_blocks: int, by_block: dict[int, list[ServerRecord]],
                suspects: Mapping[str, str] | None = None) -> str:
    suspects = suspects or {}
    groups = group_blocks(num_blocks, by_block)
    lines = [f"{model_uid}: {num_blocks} blocks"]
    for g in groups:
        span = f"{g.start_block}-{g.end_block - 1}" if g.end_block - g.start_block > 1 else f"{g.start_block}"
        if not g.servers:
            lines.append(f"  blocks {span:<9} (no server)")
        for i, s in enumerate(g.servers):
            label = f"  blocks {span:<9}" if i == 0 else " " * 18
            name = f"{s.name} " if s.name else ""
            flag = "  SUSPECT" if s.peer_id in suspects else ""
            lines.append(f"{label} {name}({s.peer_id[-8:]}) {s.state.value:<8} {s.throughput_tokens_per_second:8.1f} tok/s/block"
                         f"  cache left {s.cache_tokens_left} tokens{flag}")
    lines += [f"  warning: {w}" for w in replica_warnings(groups) + suspect_warnings(groups, suspects)]
    return "\n".join(lines)
