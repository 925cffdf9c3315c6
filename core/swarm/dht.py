"""The swarm's DHT: starting a node, announcing server records per block, reading them back.

Keys are one per block (``"<model uid>.b<block>"``); each serving peer stores its `ServerRecord` under its own
subkey, so replicas of a block sit side by side. hivemind keeps the value with the *latest expiration* for a
subkey, so every store (the offline announcement included) must expire later than the one before it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import hivemind
from hivemind.utils import get_dht_time

from core.swarm.records import RecordError, ServerRecord

log = logging.getLogger(__name__)

DEFAULT_ANNOUNCE_PERIOD_SECONDS = 10.0  # how often a server re-stores its records
DEFAULT_RECORD_TTL_SECONDS = 30.0  # a record outlives its server by at most this long


@dataclass(frozen=True)
class DHTOptions:
    """How this process joins the swarm's DHT."""

    initial_peers: tuple[str, ...] = ()
    host: str = "127.0.0.1"  # address to listen on (the tailnet address on a real swarm)
    port: int = 0  # 0 picks a free port
    client_mode: bool = False  # a client that serves nothing does not take part in storing DHT records
    identity_path: str | None = None  # a private key file: the same peer id across restarts
    announce_host: str | None = None  # address other peers should dial, when it differs from `host`
    extra: dict = field(default_factory=dict)  # further hivemind.DHT / P2P keyword arguments (authorizer, ...)


MODELS_KEY = "potluck.models"  # index of the models served in this swarm: subkey model uid -> {"num_blocks": n}


def block_key(model_uid: str, block: int) -> str:
    return f"{model_uid}.b{block}"


def _die_with_parent() -> None:  # runs inside the DHT process
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


async def _arm_parent_death_signal(dht, node) -> int:  # module level: pickled by name into the DHT process
    _die_with_parent()
    return os.getpid()


def start_dht(options: DHTOptions) -> hivemind.DHT:
    """Start a DHT node (a child process with its own p2pd). Raises RuntimeError with the reason on failure."""
    host_maddr = f"/ip4/{options.host}/tcp/{options.port}"
    kwargs = dict(options.extra)
    if options.announce_host and options.port:
        kwargs.setdefault("announce_maddrs", [f"/ip4/{options.announce_host}/tcp/{options.port}"])
    try:
        dht = hivemind.DHT(
            initial_peers=list(options.initial_peers) or None,
            start=True,
            client_mode=options.client_mode,
            host_maddrs=[host_maddr],
            identity_path=options.identity_path,
            **kwargs,
        )
    except Exception as e:  # hivemind raises bare P2PDaemonError/RuntimeError/ValueError here
        raise RuntimeError(f"could not join the swarm at {', '.join(options.initial_peers) or host_maddr}: {e}") from e
    if os.name == "posix":
        dht.run_coroutine(_arm_parent_death_signal)  # an orphaned DHT would keep our identity taken
    return dht


def visible_maddrs(dht: hivemind.DHT) -> list[str]:
    return [str(m) for m in dht.get_visible_maddrs()]


async def store_records(dht: hivemind.DHT, model_uid: str, record: ServerRecord, expiration_time: float,
                        num_blocks: int) -> bool:
    """Store `record` under every block it hosts, and the model in the swarm's index. True if all succeeded."""
    keys = [block_key(model_uid, b) for b in range(record.start_block, record.end_block)]
    value = record.to_wire()
    futures = [dht.store(k, value, expiration_time, subkey=record.peer_id, return_future=True) for k in keys]
    futures.append(dht.store(MODELS_KEY, {"num_blocks": num_blocks}, expiration_time, subkey=model_uid, return_future=True))
    results = await asyncio.gather(*futures, return_exceptions=True)
    return all(r is True for r in results)


async def _get_many(dht, node, keys):  # runs inside the DHT process
    found = await node.get_many(keys, sufficient_expiration_time=float("inf"))  # the latest records
    out = {}
    for key, item in found.items():
        if item is None or not isinstance(getattr(item, "value", None), dict):
            continue
        out[key] = {subkey: entry.value for subkey, entry in item.value.items() if hasattr(entry, "value")}
    return out


async def fetch_records(dht: hivemind.DHT, model_uid: str, blocks: Iterable[int]) -> dict[int, list[ServerRecord]]:
    """The records announced for each block; malformed records are dropped with a log line."""
    blocks = list(blocks)
    keys = {block_key(model_uid, b): b for b in blocks}
    raw = await dht.run_coroutine(_partial_get_many(list(keys)), return_future=True)
    result: dict[int, list[ServerRecord]] = {b: [] for b in blocks}
    for key, by_subkey in raw.items():
        block = keys.get(key)
        if block is None:
            continue
        for subkey, value in by_subkey.items():
            try:
                record = ServerRecord.from_wire(value)
            except RecordError as e:
                log.warning("dropping a malformed record for block %s from %s: %s", block, subkey, e)
                continue
            if record.peer_id != subkey or not record.hosts(block):
                log.warning("dropping a record for block %s whose subkey or range does not match", block)
                continue
            result[block].append(record)
    return result


class _partial_get_many:  # a picklable callable (a closure would not pickle into the DHT process)
    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)

    async def __call__(self, dht, node):
        return await _get_many(dht, node, self.keys)


async def fetch_models(dht: hivemind.DHT) -> dict[str, int]:
    """The models announced in this swarm: uid -> number of blocks."""
    raw = await dht.run_coroutine(_partial_get_many([MODELS_KEY]), return_future=True)
    models = {}
    for uid, info in raw.get(MODELS_KEY, {}).items():
        blocks = info.get("num_blocks") if isinstance(info, dict) else None
        if isinstance(uid, str) and isinstance(blocks, int) and 0 < blocks <= 10_000:
            models[uid] = blocks
    return models


def unique_servers(by_block: dict[int, list[ServerRecord]]) -> list[ServerRecord]:
    """One record per peer (the one seen first), in block order."""
    seen: dict[str, ServerRecord] = {}
    for block in sorted(by_block):
        for record in by_block[block]:
            seen.setdefault(record.peer_id, record)
    return list(seen.values())


def now() -> float:
    return get_dht_time()
