"""Taking part in a stored private swarm: this PC's identity in it, DHT settings that admit only members, and the
member check every data handler uses.

    node = open_swarm("potluck-club")                          # store entry + secret + identity, checked
    options = node.dht_options(host="100.101.1.1")             # DHTOptions with the authorizer, signed records
    server = await BlockServer.create(..., admit=node.admit()) # refuses callers who are not active members

Each swarm gets its own libp2p identity (an RSA key, `<data dir>/identities/<swarm id>.key`), so a PC's peer id
in one swarm tells nothing about its other swarms, and a revoked identity is simply replaced when its owner is
invited again. The same key signs this PC's statements in the member list (`SwarmNode.signer`). The member list lives in the swarm store (core/swarm/store.py); everything that reads it here
re-reads it every `refresh_seconds`, which is how `potluck revoke` (another process) reaches a running node.
Processes that change the store hold `store_lock` around their read-modify-write.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from potluck.core import paths
from potluck.core.swarm import membership as ms
from potluck.core.swarm.signing import Signer, SigningError, key_proto
from potluck.core.swarm.store import StoreError, SwarmInfo, SwarmStore

DEFAULT_REFRESH_SECONDS = 2.0  # how often a running node re-reads the member list from the store
NODE_FILE_SUFFIX = ".node.json"


class SwarmAccessError(StoreError):
    """This PC cannot take part in the swarm (no identity, not or no longer a member); the message says why."""


class NodeAlreadyRunning(StoreError):
    """Another process on this PC already runs a node of this swarm with the same identity."""


# ---- identities -------------------------------------------------------------------------------------------------
def identities_dir() -> Path:
    return paths.data_dir() / "identities"


def identity_path(swarm_id: str) -> Path:
    """Where this PC's identity for `swarm_id` lives (whether or not it exists)."""
    if not isinstance(swarm_id, str) or len(swarm_id) != 16 or any(c not in "0123456789abcdef" for c in swarm_id):
        raise SwarmAccessError(f"not a swarm id: {swarm_id!r}")
    return identities_dir() / f"{swarm_id}.key"


def create_identity(path: Path) -> str:
    """Write a fresh RSA libp2p identity to `path` (replacing any old one), as hivemind's
    `P2P.generate_identity` writes them; returns its peer id. Needs no hivemind (and so no torch): the CLI's
    quick commands stay quick."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    paths.ensure_dir(path.parent, 0o700)
    path.unlink(missing_ok=True)  # identities are read-only (0400)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_proto(der))  # libp2p crypto.proto PrivateKey {Type: RSA, Data: PKCS#1 DER}
    os.chmod(path, 0o400)
    return Signer(key).peer_id


def peer_id_of_identity(path: Path) -> str:
    """The base58 peer id of a libp2p RSA identity file (what p2pd derives from it)."""
    return load_signer(path).peer_id


def load_signer(path: Path) -> Signer:
    """The key of a libp2p RSA identity file, to sign member-list statements with. Raises SwarmAccessError."""
    try:
        return Signer.from_identity(path)
    except (SigningError, OSError) as e:
        raise SwarmAccessError(f"{path} is not a usable identity ({e}); join the swarm again") from None


# ---- locks between processes --------------------------------------------------------------------------------------
@contextlib.contextmanager
def store_lock(store: SwarmStore) -> Iterator[None]:
    """Hold an exclusive lock on the swarm store across processes (POSIX), so that a node merging the member list
    and `potluck revoke` never lose each other's change. Where fcntl is missing (Windows) only threads are
    serialised, by the store itself."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    paths.ensure_dir(store.path.parent, 0o700)
    with open(store.path.with_suffix(".lock"), "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def node_file(swarm_id: str) -> Path:
    """Where a running node of `swarm_id` on this PC says who and where it is (for `potluck invite create`)."""
    return paths.data_dir() / "run" / f"{swarm_id}{NODE_FILE_SUFFIX}"


@contextlib.contextmanager
def node_lock(swarm_id: str) -> Iterator[None]:
    """Refuse to run two nodes of one swarm on this PC: they would share one identity (p2pd refuses that)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = node_file(swarm_id).with_suffix(".lock")
    paths.ensure_dir(path.parent, 0o700)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeAlreadyRunning(f"a Potluck node of swarm {swarm_id} is already running on this PC; stop it "
                                     "first (each PC takes part in a swarm once)") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def write_node_file(swarm_id: str, peer_id: str, maddrs: list[str]) -> None:
    path = node_file(swarm_id)
    paths.ensure_dir(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "peer_id": peer_id, "maddrs": maddrs, "since": time.time()}))
    os.replace(tmp, path)


def remove_node_file(swarm_id: str) -> None:
    node_file(swarm_id).unlink(missing_ok=True)


def running_node(swarm_id: str) -> dict | None:
    """{"pid", "peer_id", "maddrs"} of this PC's running node of `swarm_id`, or None if none runs."""
    try:
        info = json.loads(node_file(swarm_id).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(info.get("maddrs"), list) or not isinstance(info.get("peer_id"), str):
        return None
    return info


# ---- who may call us ------------------------------------------------------------------------------------------------
class MemberCheck:
    """`admit(peer_id)` for BlockServer and the swarm's own handlers: True for active members of the stored list.
    Re-reads the store at most every `refresh_seconds`; keeps the last good list if a read fails; with no list
    at all it admits no one."""

    def __init__(self, swarm_id: str, store: SwarmStore, refresh_seconds: float = DEFAULT_REFRESH_SECONDS):
        self.swarm_id, self.store, self.refresh_seconds = swarm_id, store, refresh_seconds
        self._membership: ms.Membership | None = None
        self._loaded_at = float("-inf")
        self.refused = 0  # callers refused so far

    def reload(self) -> None:
        self._loaded_at = float("-inf")

    def membership(self) -> ms.Membership | None:
        if time.monotonic() - self._loaded_at >= self.refresh_seconds:
            try:
                self._membership = self.store.membership(self.swarm_id)
            except Exception:  # a half-written or unreadable store: keep the last good list, never fail open
                pass
            self._loaded_at = time.monotonic()
        return self._membership

    def __call__(self, peer_id: str) -> bool:
        ok = ms.is_active_member(self.membership(), peer_id)
        self.refused += not ok
        return ok


# ---- one PC's part in one swarm -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SwarmNode:
    """Everything a process needs to take part in a stored swarm as this PC's member identity."""

    info: SwarmInfo
    identity_path: Path
    peer_id: str
    store: SwarmStore = field(repr=False)
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS  # how often the member list is re-read from the store

    @property
    def swarm_id(self) -> str:
        return self.info.swarm_id

    @functools.cached_property
    def signer(self) -> Signer:
        """This PC's identity key: what its member-list statements are signed with."""
        return load_signer(self.identity_path)

    def secret(self) -> bytes:
        """The swarm's current secret (it changes when the owner rotates it: read it again each time)."""
        return self.store.secret(self.swarm_id)

    def membership(self) -> ms.Membership | None:
        return self.store.membership(self.swarm_id)

    def authorizer(self):
        from potluck.core.swarm.admission import StoreMembership, SwarmAuthorizer, load_identity

        source = StoreMembership(self.swarm_id, str(self.store.path))
        return SwarmAuthorizer(self.swarm_id, self.secret(), load_identity(str(self.identity_path)), source,
                               membership_refresh_seconds=self.refresh_seconds)

    def dht_extra(self, authorizer=None) -> dict:
        """hivemind.DHT keyword arguments of a member, on top of what DHTOptions sets (host, peers, identity)."""
        from hivemind.dht.crypto import RSASignatureValidator

        from potluck.core.swarm.admission import tailnet_p2p_kwargs

        authorizer = authorizer or self.authorizer()
        p2p = {k: v for k, v in tailnet_p2p_kwargs("127.0.0.1").items() if k not in ("host_maddrs", "announce_maddrs")}
        return {
            **p2p,
            "authorizer": authorizer,
            "record_validators": [RSASignatureValidator(authorizer.identity)],
            "ensure_bootstrap_success": False,  # a member whose peers are all offline still starts; it rejoins later
            "check_if_identity_free": False,  # node_lock does this locally, without a throw-away daemon
        }

    def dht_options(self, host: str, port: int = 0, *, initial_peers: tuple[str, ...] | None = None,
                    client_mode: bool = False, announce_host: str | None = None):
        from potluck.core.swarm.dht import DHTOptions

        peers = self.initial_peers() if initial_peers is None else tuple(initial_peers)
        return DHTOptions(initial_peers=peers, host=host, port=port, client_mode=client_mode,
                          identity_path=str(self.identity_path), announce_host=announce_host, extra=self.dht_extra())

    def admit(self) -> MemberCheck:
        return MemberCheck(self.swarm_id, self.store, self.refresh_seconds)

    def initial_peers(self) -> tuple[str, ...]:
        """Known peers to join through: the store's bootstrap list without this PC's own addresses."""
        return tuple(m for m in self.store.get(self.swarm_id).bootstrap if not m.endswith("/p2p/" + self.peer_id))


def open_swarm(swarm: str, store: SwarmStore | None = None, *, identity: Path | None = None,
               refresh_seconds: float = DEFAULT_REFRESH_SECONDS) -> SwarmNode:
    """This PC's part in `swarm` (a name or id from the store). Raises SwarmAccessError/StoreError saying why not."""
    store = store or SwarmStore()
    info = store.get(swarm)
    path = identity or identity_path(info.swarm_id)
    if not path.exists():
        raise SwarmAccessError(f"this PC has no identity for swarm {info.name!r} ({path} is missing); "
                               "ask a member for a new invite code and join again")
    signer = load_signer(path)
    peer_id = signer.peer_id
    membership = upgraded_membership(store, info.swarm_id, signer)
    member = membership.get(peer_id) if membership is not None else None
    if member is None:
        raise SwarmAccessError(f"this PC ({peer_id}) is not on the member list of swarm {info.name!r}")
    if member.revoked:
        raise SwarmAccessError(f"this PC was removed from swarm {info.name!r}; ask a member for a new invite code")
    store.secret(info.swarm_id)  # fails now, with the reason, if the secret is gone
    return SwarmNode(info, path, peer_id, store, refresh_seconds)


def upgraded_membership(store: SwarmStore, swarm_id: str, me: Signer) -> ms.Membership | None:
    """The stored list, made current for this PC: a format-1 list re-signed when this PC is the owner, and this
    PC's own key added to its entry when the list lacks it (so that others can check what it signs)."""
    with store_lock(store):
        current = store.membership(swarm_id)
        if current is None:
            return None
        if current.legacy and current.owner == me.peer_id:
            current = store.save_membership(swarm_id, ms.migrate(current, me))
        if not current.legacy and ms.learn_key(current, me.peer_id, me.public_key) is not current:
            current = store.save_membership(swarm_id, ms.learn_key(current, me.peer_id, me.public_key))
        return current
