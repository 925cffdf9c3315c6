"""The swarm's DHT: starting a node, announcing server records per block, reading them back.

Keys are one per block (``"<model uid>.b<block>"``); each serving peer stores its `ServerRecord` under its own
subkey, so replicas of a block sit side by side. hivemind keeps the value with the *latest expiration* for a
subkey, so every store (the offline announcement included) must expire later than the one before it.

In a private swarm (the DHT has hivemind's RSASignatureValidator, see core/swarm/secure.py) the subkey is the
peer id followed by the owner's `[owner:<RSA public key>]` marker: the DHT then accepts only records signed by
that key, and a reader keeps a record only if the key in its subkey hashes to the record's peer id, and that
peer is an active member in the reader's own member list. Without a swarm the subkey is the bare peer id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import hivemind
from hivemind.dht.crypto import RSASignatureValidator
from hivemind.utils import get_dht_time

from potluck.core.swarm.admission import owner_peer_id
from potluck.core.swarm.records import RecordError, ServerRecord

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
    announce_port: int | None = None  # port other peers should dial (a forwarded port or a relay), when not `port`
    extra: dict = field(default_factory=dict)  # further hivemind.DHT / P2P keyword arguments (authorizer, ...)


MODELS_KEY = "potluck.models"  # index of the models served in this swarm: subkey model uid -> {"num_blocks": n}


def block_key(model_uid: str, block: int) -> str:
    return f"{model_uid}.b{block}"


async def _arm_parent_death_signal(dht, node) -> int:  # module level: pickled by name into the DHT process
    """Make the DHT process (and its p2pd) end when our process dies, even by kill -9.

    An orphaned DHT child and its p2pd would keep this peer's identity taken, and a restart would be refused.
    """
    daemon = getattr(node.p2p, "_child", None)  # the p2pd subprocess this DHT process started

    def on_term(signum, frame):
        if daemon is not None and daemon.returncode is None:
            try:
                daemon.kill()
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the signal was armed
        on_term(signal.SIGTERM, None)
    return os.getpid()


class _rejoin:  # picklable: runs inside the DHT process
    """Dial and ping the swarm's bootstrap peers again: a peer cut off for a minute does not come back by itself."""

    def __init__(self, maddrs: Sequence[str]):
        self.maddrs = list(maddrs)

    async def __call__(self, dht, node) -> int:
        from hivemind.p2p import PeerID
        from hivemind.utils.multiaddr import Multiaddr

        answered = 0
        for maddr in self.maddrs:
            try:
                peer_id = PeerID.from_base58(maddr.rsplit("/p2p/", 1)[1])
                if peer_id == node.peer_id:
                    continue
                await asyncio.wait_for(node.p2p._client.connect(peer_id, [Multiaddr(maddr.rsplit("/p2p/", 1)[0])]), 3.0)
                answered += (await asyncio.wait_for(node.protocol.call_ping(peer_id), 3.0)) is not None
            except Exception:  # unreachable right now: try again next period
                continue
        return answered


async def rejoin(dht: hivemind.DHT, initial_peers: Sequence[str]) -> int:
    """Re-dial the bootstrap peers from inside the DHT process; returns how many answered."""
    if not initial_peers:
        return 0
    return await dht.run_coroutine(_rejoin(initial_peers), return_future=True)


_umask_lock = threading.Lock()
_umask_saved = {"depth": 0, "umask": 0o022}  # nested and concurrent blocks: the first sets, the last restores


@contextlib.contextmanager
def private_umask():
    """Create files and sockets readable by this user only while the block runs (umask 077; the process's umask
    is restored after). p2pd's control socket and hivemind's handler sockets live in /tmp and follow the umask:
    under umask 000 another local user could connect to them, drive the node's identity and hand it streams with
    made-up peer ids. A child forked inside the block keeps the umask for good."""
    if os.name != "posix":
        yield
        return
    with _umask_lock:
        if _umask_saved["depth"] == 0:
            _umask_saved["umask"] = os.umask(0o077)
        _umask_saved["depth"] += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_saved["depth"] -= 1
            if _umask_saved["depth"] == 0:
                os.umask(_umask_saved["umask"])


def start_dht(options: DHTOptions) -> hivemind.DHT:
    """Start a DHT node (a child process with its own p2pd, both under umask 077: see `private_umask`). Raises
    RuntimeError with the reason on failure."""
    host_maddr = f"/ip4/{options.host}/tcp/{options.port}"
    kwargs = dict(options.extra)
    # A friends' swarm needs none of these, and each sends traffic beyond the swarm's own addresses
    # (UPnP/NAT-PMP multicast, AutoNAT probes, relay discovery): off unless a caller asks otherwise.
    for name in ("use_relay", "use_auto_relay", "nat_port_map", "auto_nat", "use_ipfs"):
        kwargs.setdefault(name, False)
    announce_port = options.announce_port or options.port
    if (options.announce_host or options.announce_port) and announce_port:
        kwargs.setdefault("announce_maddrs", [f"/ip4/{options.announce_host or options.host}/tcp/{announce_port}"])
    try:
        with private_umask():
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


def owner_marker(dht: hivemind.DHT) -> str | None:
    """The `[owner:...]` marker of this DHT's own key when its records are signed (a private swarm), else None."""
    for validator in getattr(getattr(dht, "_record_validator", None), "_validators", ()):  # hivemind's CompositeValidator
        if isinstance(validator, RSASignatureValidator):
            return validator.local_public_key.decode("ascii")
    return None


def owner_subkey(dht: hivemind.DHT, peer_id: str) -> str:
    """The subkey under which `peer_id` (this DHT's own peer) stores its records: signed in a private swarm."""
    marker = owner_marker(dht)
    return peer_id if marker is None else peer_id + marker


def subkey_owner(subkey, signed: bool) -> str | None:
    """The peer id a record's subkey vouches for: with `signed`, only an owner subkey whose key hashes to the
    peer id it starts with (the DHT checked the record's signature against that key); else the bare peer id."""
    if not isinstance(subkey, str):
        return None
    if not signed:
        return subkey
    owner = owner_peer_id(subkey.encode())
    return owner if owner is not None and subkey.startswith(owner + "[owner:") else None


async def store_records(dht: hivemind.DHT, model_uid: str, record: ServerRecord, expiration_time: float,
                        num_blocks: int, blocks: Iterable[int] | None = None) -> bool:
    """Store `record` under `blocks` (default: those it hosts) and the model in the swarm's index.

    A block key may get a record that does not host it (after the server shed that block): readers skip it,
    which takes the server off that block's list before the old record would have expired. True if all stored.
    """
    blocks = range(record.start_block, record.end_block) if blocks is None else blocks
    keys = [block_key(model_uid, b) for b in blocks]
    value = record.to_wire()
    subkey = owner_subkey(dht, record.peer_id)
    futures = [dht.store(k, value, expiration_time, subkey=subkey, return_future=True) for k in keys]
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


async def _get_many_with_members(dht, node, keys):  # runs inside the DHT process
    """The records, and the active members in this node's list (None when the DHT admits everyone)."""
    membership = getattr(getattr(node.protocol, "authorizer", None), "membership", None)
    if not callable(membership):
        return await _get_many(dht, node, keys), None
    current = membership()
    active = frozenset(m.peer_id for m in current.active) if current is not None else frozenset()
    return await _get_many(dht, node, keys), active


async def fetch_records(dht: hivemind.DHT, model_uid: str, blocks: Iterable[int]) -> dict[int, list[ServerRecord]]:
    """The records announced for each block; malformed records are dropped with a log line."""
    blocks = list(blocks)
    keys = {block_key(model_uid, b): b for b in blocks}
    raw, members = await read_with_members(dht, keys)
    signed = owner_marker(dht) is not None
    result: dict[int, list[ServerRecord]] = {b: [] for b in blocks}
    for key, by_subkey in raw.items():
        block = keys.get(key)
        if block is None:
            continue
        for subkey, value in by_subkey.items():
            owner = subkey_owner(subkey, signed)
            if owner is None or (members is not None and owner not in members):
                continue  # unsigned in a private swarm, or from a peer that is not (or no longer) a member
            try:
                record = ServerRecord.from_wire(value)
            except RecordError as e:
                log.warning("dropping a malformed record for block %s from %s: %s", block, owner[-8:], e)
                continue
            if record.peer_id != owner:
                log.warning("dropping a record for block %s whose subkey does not match its peer id", block)
                continue
            if not record.hosts(block):
                continue  # the server shed this block and says so

            result[block].append(record)
    return result


async def read_with_members(dht: hivemind.DHT, keys: Iterable[str]) -> tuple[dict, frozenset[str] | None]:
    """The latest values under `keys` ({key: {subkey: value}}) and the active members in this node's list (None
    when the DHT admits everyone), read together in the DHT process so both describe the same moment."""
    return await dht.run_coroutine(_partial_get_many(list(keys), with_members=True), return_future=True)


class _partial_get_many:  # a picklable callable (a closure would not pickle into the DHT process)
    def __init__(self, keys: Sequence[str], with_members: bool = False):
        self.keys, self.with_members = list(keys), with_members

    async def __call__(self, dht, node):
        if self.with_members:
            return await _get_many_with_members(dht, node, self.keys)
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


def now() -> float:
    return get_dht_time()
