"""The use cases of a private swarm, written once: create one, join one with an invite, take part as a member
(listen host, port, peers, DHT, services), and tell the swarm about a change when no node runs here.

So are making an invite (never one naming only 127.0.0.1 unless asked), revoking a member and leaving. Both
the command line (core/cli/swarm.py, core/cli/serving.py) and the app's node (core/node/) call these; they raise
domain errors (subclasses of core.errors.PotluckError) with plain-words messages and print nothing.

Where to listen: the address given, else POTLUCK_HOST, else this PC's Tailscale address; with no tailnet, a caller
that allows it falls back to 127.0.0.1 (this PC only), the others get an error saying how to fix it. A member
keeps the port it used last time, so the addresses other members remember stay good.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from potluck.core import paths
from potluck.core.errors import PotluckError
from potluck.core.swarm import membership as ms
from potluck.core.swarm import reachability, secure, tailscale
from potluck.core.swarm.invite import Invite, decode_invite
from potluck.core.swarm.join import request_join
from potluck.core.swarm.store import SwarmInfo, SwarmNotFound, SwarmStore

log = logging.getLogger(__name__)

HOST_ENV = "POTLUCK_HOST"  # address to listen on when none is given (e.g. a LAN address without Tailscale)
LOOPBACK = "127.0.0.1"
DEFAULT_MEMBERSHIP_PERIOD_SECONDS = 10.0  # how often a member shares and re-reads the member list
MAX_BOOTSTRAP = 8


class LifecycleError(PotluckError, RuntimeError):
    """A swarm flow cannot go on; the message says why and what to do."""

# ---- where to listen --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ListenAddress:
    host: str  # the address to listen on
    announce_host: str | None = None  # the address to tell others, when it differs (listening on 0.0.0.0)

    @property
    def this_pc_only(self) -> bool:
        return ipaddress.IPv4Address(self.host).is_loopback


def choose_listen_address(requested: str | None, *, environ: Mapping[str, str] = os.environ,
                          fallback_to_loopback: bool = False) -> ListenAddress:
    """The address to listen on (see the module doc). Raises LifecycleError for a bad address, or when there is
    no tailnet and no fallback."""

    host = (requested or environ.get(HOST_ENV, "")).strip()
    if host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise LifecycleError(f"{host!r} is not an IPv4 address to listen on") from None
        if host != "0.0.0.0":
            return ListenAddress(host)
        try:
            return ListenAddress(host, str(tailscale.find_tailnet_ipv4().ipv4))
        except tailscale.TailnetError:
            return ListenAddress(host)
    try:
        return ListenAddress(str(tailscale.find_tailnet_ipv4().ipv4))
    except tailscale.TailnetError as e:
        if fallback_to_loopback:
            log.warning("listening on %s only, so friends cannot reach this PC: %s", LOOPBACK, e)
            return ListenAddress(LOOPBACK)
        raise LifecycleError(f"{e} To try Potluck on this PC alone, listen on {LOOPBACK} (--host {LOOPBACK}).") from None


def free_port(host: str, preferred: int = 0) -> int:
    """`preferred` if it is free on `host`, else any free port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as p2pd does: a port in TIME_WAIT is free
            try:
                s.bind(("" if host == "0.0.0.0" else host, port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise LifecycleError(f"no free port on {host}")


def _port_file(swarm_id: str) -> Path:
    return paths.data_dir() / "run" / f"{swarm_id}.port"


def remembered_port(swarm_id: str) -> int:
    try:
        port = int(_port_file(swarm_id).read_text())
        return port if 0 < port < 65536 else 0
    except (OSError, ValueError):
        return 0


def remember_port(swarm_id: str, maddrs: list[str]) -> None:
    ports = {int(m.split("/")[4]) for m in maddrs if m.count("/") >= 4 and m.split("/")[4].isdigit()}
    if len(ports) == 1:
        paths.ensure_dir(_port_file(swarm_id).parent, 0o700)
        _port_file(swarm_id).write_text(str(ports.pop()))


# ---- create -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreatedSwarm:
    info: SwarmInfo
    peer_id: str  # this PC's identity in it, its first member
    secret_location: object  # core.secrets.SecretLocation


def create_swarm(name: str, model: str, revision: str = "", *, member_name: str = "", quant: str = "none",
                 store: SwarmStore | None = None) -> CreatedSwarm:
    """A new private swarm with this PC as its first member (a fresh identity, the secret in the keyring or a
    private file). Every member serves its blocks at the swarm's weight precision `quant`."""
    store = store or SwarmStore()
    pending = secure.identities_dir() / f".new-{os.getpid()}-{time.time_ns()}.key"  # renamed once the id is known
    peer_id = secure.create_identity(pending)
    try:
        with secure.store_lock(store):
            info, location = store.create_swarm(name, model, revision, creator=secure.load_signer(pending),
                                                creator_name=(member_name or socket.gethostname())[:64], quant=quant)
        pending.replace(secure.identity_path(info.swarm_id))
    finally:
        pending.unlink(missing_ok=True)
    log.info("created private swarm %r (id %s) with this PC as its first member", info.name, info.swarm_id)
    return CreatedSwarm(info, peer_id, location)


# ---- join ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JoinedSwarm:
    info: SwarmInfo
    members: int  # active members, this PC included
    secret_location: object | None  # None when this PC was a member already
    already_member: bool = False


def join_swarm(code: str, host: str, name: str, *, port: int = 0, store: SwarmStore | None = None) -> JoinedSwarm:
    """Join the swarm of an invite code through the inviter's node, as a fresh identity listening on host:port
    (the inviter dials back exactly there). A PC that is a member already just reopens the swarm, even with a
    code that expired since. Raises InviteError, JoinError, StoreError or LifecycleError saying why not."""

    store = store or SwarmStore()
    invite = decode_invite(code, allow_expired=True)
    try:
        node = secure.open_swarm(invite.swarm_id, store)
        return JoinedSwarm(node.info, _active_members(node.membership()), None, already_member=True)
    except (SwarmNotFound, secure.SwarmAccessError):
        pass  # not yet a member (or no longer): join with a fresh identity
    invite = decode_invite(code)  # an expired code can reopen a swarm joined earlier, not join one
    if secure.running_node(invite.swarm_id):
        raise LifecycleError(f"a node of {invite.swarm_name!r} is running on this PC; stop it before joining again")
    path = secure.identity_path(invite.swarm_id)
    secure.create_identity(path)
    log.info("joining %r (%s) as %r", invite.swarm_name, invite.model_id, name)
    welcome, membership = asyncio.run(request_join(invite, path, host, name[:64], port=port))
    with secure.store_lock(store):
        info, location = store.add_joined_swarm(invite, welcome.secret, membership=membership, epoch=welcome.epoch,
                                                proof=welcome.proof)
        store.set_bootstrap(info.swarm_id, tuple(dict.fromkeys(welcome.bootstrap + invite.bootstrap))[:MAX_BOOTSTRAP])
    return JoinedSwarm(store.get(info.swarm_id), len(membership.active), location)


def describe_invite_code(code: str) -> Invite:
    """The invite in a code, expired or not (for `invite show` and the app's join page)."""
    return decode_invite(code, allow_expired=True)


def _active_members(membership) -> int:
    return len(membership.active) if membership is not None else 0


# ---- take part as a member ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberSetup:
    """Everything a process needs to serve (or chat) as this PC's member of a stored swarm."""
    node: secure.SwarmNode
    address: ListenAddress
    port: int  # 0: any
    initial_peers: tuple[str, ...]  # the known members that answered just now
    admit: secure.MemberCheck  # who may call this PC's server
    period_seconds: float

    def dht_options(self, *, client_mode: bool = False):
        return self.node.dht_options(self.address.host, self.port, initial_peers=self.initial_peers,
                                     client_mode=client_mode, announce_host=self.address.announce_host)

    def services(self, dht, *, accept_joins: bool = True):
        """The member list sync and the join handler, as an async context manager (core/swarm/services.py)."""
        from potluck.core.swarm.services import member_services

        return member_services(self.node, dht, admit=self.admit, accept_joins=accept_joins,
                               sync_period_seconds=self.period_seconds)


def prepare_member(swarm: str, *, host: str | None = None, port: int = 0,
                   period_seconds: float = DEFAULT_MEMBERSHIP_PERIOD_SECONDS, fallback_to_loopback: bool = False,
                   environ: Mapping[str, str] = os.environ, store: SwarmStore | None = None) -> MemberSetup:
    """Open the stored swarm as this PC's member, choose where to listen (the port used last time when free),
    and find which known members answer. Imports the member services before any DHT process forks."""
    from potluck.core.swarm import services as _services  # noqa: F401  (defined before the DHT process forks)

    node = secure.open_swarm(swarm, store or SwarmStore(),
                             refresh_seconds=min(secure.DEFAULT_REFRESH_SECONDS, period_seconds / 2))
    address = choose_listen_address(host, environ=environ, fallback_to_loopback=fallback_to_loopback)
    port = port or remembered_port(node.swarm_id)
    port = free_port(address.host, port) if (port or address.announce_host) else 0
    known = node.initial_peers()
    peers = tuple(asyncio.run(reachability.reachable(list(known)))) if known else ()
    if known and not peers:
        log.warning("no known member of %r answers right now; running anyway and retrying", node.info.name)
    return MemberSetup(node, address, port, peers, node.admit(), period_seconds)


def own_member_name(node: secure.SwarmNode) -> str:
    m = node.membership()
    me = m.get(node.peer_id) if m is not None else None
    return me.name if me is not None else ""


# ---- tell the swarm -----------------------------------------------------------------------------------------------
def tell_swarm(swarm_id: str, *, host: str | None = None, store: SwarmStore | None = None) -> bool:
    """With no node running here: join the swarm's DHT briefly and publish this PC's member list. False when no
    member could be reached."""
    from potluck.core.swarm.dht import start_dht
    from potluck.core.swarm.services import MembershipSync

    try:
        setup = prepare_member(swarm_id, host=host, store=store)
    except secure.SwarmAccessError:
        return False
    if not setup.initial_peers:
        return False
    dht = start_dht(replace(setup.dht_options(), port=0))
    try:
        sync = MembershipSync(setup.node, dht, [], period_seconds=setup.period_seconds)
        return bool(asyncio.run(sync.publish()))
    finally:
        dht.shutdown()


# ---- invites, revocation, leaving ---------------------------------------------------------------------------------
def _maddr_host(maddr: str) -> str:
    return maddr.split("/")[2] if maddr.count("/") >= 3 else ""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def invite_addresses(maddrs: list[str], *, this_pc_only: bool = False) -> tuple[str, ...]:
    """The addresses worth putting in a code: tailnet ones, else other non-loopback ones. A code that names only
    127.0.0.1 works on this PC alone, so it is made only when the owner chose that (`this_pc_only`); otherwise
    LifecycleError says what is missing (Tailscale's state, in words) and how to fix it."""
    tailnet = [m for m in maddrs if tailscale.is_tailnet_ipv4(_maddr_host(m))]
    other = [m for m in maddrs if not _is_loopback(_maddr_host(m)) and _maddr_host(m) != "0.0.0.0"]
    chosen = tailnet or other
    if chosen:
        return tuple(chosen[:MAX_BOOTSTRAP])
    if not maddrs:
        raise LifecycleError("This PC's node has no address yet: wait until it is running, then try again.")
    if not this_pc_only:
        advice = tailscale.tailscale_advice(tailscale.tailscale_state()) or \
            "Tailscale runs here now: restart Potluck so that it listens on this PC's tailnet address."
        raise LifecycleError(f"Friends cannot reach this PC: it listens on {LOOPBACK} only, so a code would work on "
                             f"this PC alone. {advice}")
    return tuple(m for m in maddrs if _is_loopback(_maddr_host(m)))[:MAX_BOOTSTRAP]


def make_invite(swarm_id: str, maddrs: list[str], *, expires_in_seconds: float, max_uses: int | None,
                this_pc_only: bool = False, store: SwarmStore | None = None) -> Invite:
    """A new code for this PC's running node of `swarm_id` (its addresses `maddrs`), remembered in the store."""
    store = store or SwarmStore()
    bootstrap = invite_addresses(maddrs, this_pc_only=this_pc_only)
    own = own_peer_id(swarm_id)
    with secure.store_lock(store):
        current = store.membership(swarm_id)
        refusal = ms.may_invite(current, own) if current is not None else "this PC has no member list yet"
        if refusal:
            raise LifecycleError(f"This PC cannot make invite codes: {refusal}.")
        return store.create_invite(swarm_id, bootstrap, expires_in_seconds=expires_in_seconds, max_uses=max_uses,
                                   created_by=own)


def own_peer_id(swarm_id: str) -> str:
    """This PC's peer id in `swarm_id` ('' when it has no identity there)."""
    path = secure.identity_path(swarm_id)
    return secure.peer_id_of_identity(path) if path.exists() else ""


def revoke_member(swarm_id: str, query: str, *, store: SwarmStore | None = None,
                  now: float | None = None) -> ms.Member:
    """Revoke the member `query` names (name, peer id or a unique start of one) in the stored list; the running
    node's sync tells the others. Returns who was revoked. Raises LifecycleError or MembershipError saying why not."""
    store = store or SwarmStore()
    me = secure.load_signer(secure.identity_path(swarm_id))
    with secure.store_lock(store):
        current = store.membership(swarm_id)
        if current is None:
            raise LifecycleError("this PC has no member list for that swarm yet")
        target = ms.find_member(current, query)
        if target.peer_id == me.peer_id:
            raise LifecycleError("that is this PC: to leave the swarm, use Leave instead")
        refusal = ms.may_revoke(current, me.peer_id, target.peer_id)
        if refusal:
            raise LifecycleError(f"This PC cannot revoke {target.name or target.peer_id}: {refusal}.")
        store.save_membership(swarm_id, ms.revoke_member(current, target.peer_id, me,
                                                         time.time() if now is None else now))
        store.cancel_invites_of(swarm_id, [target.peer_id], [target.invite_id] if target.invite_id else [])
    return target


def mark_leaving(swarm_id: str, *, store: SwarmStore | None = None) -> bool:
    """Record in the stored list that this PC leaves (its own entry revoked), so that the running node's sync can
    tell the others before the swarm is forgotten. False when the list does not allow it."""
    store = store or SwarmStore()
    own = own_peer_id(swarm_id)
    with secure.store_lock(store):
        current = store.membership(swarm_id)
        if not own or current is None or not ms.is_active_member(current, own):
            return False
        try:
            me = secure.load_signer(secure.identity_path(swarm_id))
            store.save_membership(swarm_id, ms.revoke_member(current, own, me, time.time()))
        except ms.MembershipError as e:
            log.info("could not mark this PC as leaving: %s", e)
            return False
    return True


def forget_swarm(swarm_id: str, *, store: SwarmStore | None = None) -> None:
    """Forget a swarm on this PC: its entry, its secret and this PC's identity in it (no node of it may run)."""
    store = store or SwarmStore()
    if secure.running_node(swarm_id) and secure.running_node(swarm_id)["pid"] != os.getpid():
        raise LifecycleError("a node of that swarm still runs on this PC: stop it first")
    with secure.store_lock(store):
        store.remove_swarm(swarm_id)
    secure.identity_path(swarm_id).unlink(missing_ok=True)
    _port_file(swarm_id).unlink(missing_ok=True)
