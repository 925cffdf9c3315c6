"""Typed records that travel through the swarm's DHT: what one server announces about itself.

A server stores one `ServerRecord` per block it hosts (key: the block's DHT key, subkey: its peer id). Records
are plain dicts on the wire (msgpack inside hivemind); `from_wire` checks every field's type and range and
ignores fields it does not know, so newer peers can add fields without breaking older ones.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

RECORD_VERSION = 1
MAX_BLOCKS = 10_000  # no model has more blocks; bounds what a peer may claim


class ServerState(str, enum.Enum):
    JOINING = "joining"  # loading weights, not routable yet
    ONLINE = "online"  # serving, accepts new sessions
    DRAINING = "draining"  # finishing or moving its sessions, accepts no new ones
    OFFLINE = "offline"  # announced on clean shutdown; records expire soon after


class RecordError(ValueError):
    """A record from a peer is malformed; the record is dropped, the peer is not trusted for it."""


@dataclass(frozen=True)
class ServerRecord:
    peer_id: str  # base58 libp2p peer id of the server
    start_block: int  # first hosted block (inclusive)
    end_block: int  # one past the last hosted block
    state: ServerState = ServerState.ONLINE
    name: str = ""  # friendly name the owner chose ("Ana's mini PC")
    throughput_tokens_per_second: float = 0.0  # measured compute speed of one block, tokens/s
    cache_tokens_left: int = 0  # KV-cache tokens still free (per block)
    addrs: tuple[str, ...] = ()  # multiaddrs the server listens on
    version: str = ""  # Potluck version of the server
    compute: str = ""  # what its blocks compute in: "bfloat16", "float32+int4", … (clients route on one only)
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown fields from newer peers, kept as-is

    def __post_init__(self) -> None:
        _check(isinstance(self.peer_id, str) and 0 < len(self.peer_id) <= 128, "peer_id must be a short string")
        _check(_is_int(self.start_block) and _is_int(self.end_block), "block bounds must be integers")
        _check(0 <= self.start_block < self.end_block <= MAX_BLOCKS, f"bad block range {self.start_block}:{self.end_block}")
        _check(isinstance(self.state, ServerState), "state must be a ServerState")
        _check(isinstance(self.name, str) and len(self.name) <= 64, "name must be at most 64 characters")
        _check(
            isinstance(self.throughput_tokens_per_second, (int, float))
            and math.isfinite(self.throughput_tokens_per_second)
            and self.throughput_tokens_per_second >= 0,
            "throughput must be a finite non-negative number",
        )
        _check(_is_int(self.cache_tokens_left) and self.cache_tokens_left >= 0, "cache_tokens_left must be >= 0")
        _check(isinstance(self.compute, str) and len(self.compute) <= 32, "compute must be a short string")
        _check(
            isinstance(self.addrs, tuple) and len(self.addrs) <= 16 and all(isinstance(a, str) and len(a) < 256 for a in self.addrs),
            "addrs must be at most 16 short strings",
        )

    @property
    def num_blocks(self) -> int:
        return self.end_block - self.start_block

    def hosts(self, block: int) -> bool:
        return self.start_block <= block < self.end_block

    def to_wire(self) -> dict[str, Any]:
        wire = dict(self.extra)
        wire.update(asdict(self))
        wire.pop("extra")
        wire["state"] = self.state.value
        wire["addrs"] = list(self.addrs)
        wire["record_version"] = RECORD_VERSION
        return wire

    @classmethod
    def from_wire(cls, wire: Any) -> "ServerRecord":
        """Validate a record received from a peer. Raises RecordError with the reason."""
        if not isinstance(wire, Mapping):
            raise RecordError(f"record must be a mapping, got {type(wire).__name__}")
        known = {"peer_id", "start_block", "end_block", "state", "name", "throughput_tokens_per_second",
                 "cache_tokens_left", "addrs", "version", "compute"}
        missing = {"peer_id", "start_block", "end_block", "state"} - set(wire)
        if missing:
            raise RecordError(f"record lacks {sorted(missing)}")
        try:
            state = ServerState(wire["state"])
        except ValueError:
            raise RecordError(f"unknown server state {wire['state']!r}") from None
        addrs = wire.get("addrs", ())
        if not isinstance(addrs, (list, tuple)):
            raise RecordError("addrs must be a list")
        extra = {k: v for k, v in wire.items() if k not in known and k != "record_version" and isinstance(k, str)}
        try:
            return cls(
                peer_id=wire["peer_id"],
                start_block=wire["start_block"],
                end_block=wire["end_block"],
                state=state,
                name=wire.get("name", ""),
                throughput_tokens_per_second=float(wire.get("throughput_tokens_per_second", 0.0)),
                cache_tokens_left=wire.get("cache_tokens_left", 0),
                addrs=tuple(addrs),
                version=str(wire.get("version", "")),
                compute=wire.get("compute", ""),
                extra=extra,
            )
        except (TypeError, ValueError) as e:
            raise RecordError(str(e)) from None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RecordError(message)


def unique_servers(by_block: Mapping[int, list[ServerRecord]]) -> list[ServerRecord]:
    """One record per peer (the one seen first), in block order."""
    seen: dict[str, ServerRecord] = {}
    for block in sorted(by_block):
        for record in by_block[block]:
            seen.setdefault(record.peer_id, record)
    return list(seen.values())


def online_per_block(num_blocks: int, by_block: Mapping[int, list[ServerRecord]]) -> tuple[int, ...]:
    """Servers ONLINE per block (draining, joining and offline ones cannot take a new conversation)."""
    return tuple(sum(1 for r in by_block.get(b, ()) if r.state is ServerState.ONLINE) for b in range(num_blocks))
