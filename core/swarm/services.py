"""What a member's node runs beside its block server: the member list shared through the DHT, rejoining after an
outage, the join handler for invite codes made on this PC, the swarm secret's rotation and handouts
(core/swarm/rotation.py), and the node file `potluck invite create` reads.

Member list. Every period each node stores its list under `potluck.members` (subkey: its own, signed, see
core/swarm/dht.owner_subkey) together with its listen addresses, reads everyone's, and merges into its store the
lists of peers that are active members in its own list (`merge_offers`). Every statement in a list is signed by
whoever may make it (core/swarm/membership.py), so merging only ever adds what its authors could do themselves:
a revocation made by the owner or an admin reaches every node within about two periods, and a node never takes
a list from a peer it knows as revoked. The owner's node countersigns what others did. A node cancels the invite
codes it holds that a revoked member made or used. The DHT authorizer and the servers' member check re-read the
store, so they follow within `refresh_seconds`.

Secret. After a revocation the owner's node makes a new secret and hands it to every member it can reach; each
node also asks one known member per period whether a newer secret exists, so a member that was offline catches up
when it meets any member.

Rejoining. Every period the node dials and pings the swarm's known addresses (core/swarm/dht.rejoin): a node whose
peers were all offline when it started, or whose link dropped, comes back (hivemind does not retry on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import AsyncIterator, Sequence

from potluck.core.swarm import admission
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm import membership as ms
from potluck.core.swarm.join import JOIN_PROTOCOL, JoinService
from potluck.core.swarm.rotation import SECRET_PROTOCOL, SecretService
from potluck.core.swarm.secure import MemberCheck, SwarmNode, remove_node_file, store_lock, write_node_file

log = logging.getLogger(__name__)

MEMBERS_KEY = "potluck.members"
DEFAULT_SYNC_PERIOD_SECONDS = 10.0  # publish and merge the member list this often; revocations spread in ~2 periods
MAX_BOOTSTRAP = 8


def merge_offers(current: ms.Membership, offers: Sequence[tuple[str, ms.Membership]]) -> ms.Membership:
    """`current` merged with each offered list whose sender is an active member of the merged result; repeated
    until nothing changes, so a list naming a new member lets that member's own list in. Lists of unknown or
    revoked senders are ignored."""
    merged, pending = current, list(offers)
    progress = True
    while progress:
        progress = False
        for offer in list(pending):
            owner, offered = offer
            if (offered.swarm_id, offered.owner) == (merged.swarm_id, merged.owner) and ms.is_active_member(merged, owner):
                merged = ms.merge(merged, offered)
                pending.remove(offer)
                progress = True
    return merged


def same_members(a: ms.Membership | None, b: ms.Membership | None) -> bool:
    """True when two lists say the same (entries, statements and settings; the version does not count)."""
    key = lambda m: (m.members, m.settings, m.legacy) if m is not None else None  # noqa: E731
    return key(a) == key(b)


class MembershipSync:
    """Publishes this node's list and merges the others' (see the module doc)."""

    def __init__(self, node: SwarmNode, dht, own_maddrs: Sequence[str], *,
                 period_seconds: float = DEFAULT_SYNC_PERIOD_SECONDS, on_change=None,
                 secrets: SecretService | None = None, p2p=None):
        self.node, self.dht, self.own_maddrs = node, dht, list(own_maddrs)
        self.period_seconds, self.on_change = period_seconds, on_change
        self.secrets, self.p2p = secrets, p2p  # with both: rotate (owner) and ask for newer secrets
        self.rounds = 0  # completed rounds
        self.changes = 0  # rounds that changed the stored list
        self.addresses: dict[str, list[str]] = {}  # members' addresses, as their lists in the DHT give them

    async def publish(self) -> bool:
        signed = self.node.store.get(self.node.swarm_id).membership
        if signed is None or signed.get("format") != ms.MEMBERSHIP_FORMAT:
            return False  # a format-1 list waits for the owner's signed one
        value = {"list": signed, "maddrs": self.own_maddrs}
        expiration = swarm_dht.now() + 3 * self.period_seconds
        subkey = swarm_dht.owner_subkey(self.dht, self.node.peer_id)
        return bool(await self.dht.store(MEMBERS_KEY, value, expiration, subkey=subkey, return_future=True))

    async def offers(self) -> list[tuple[str, ms.Membership, list[str]]]:
        """(sender, verified list, its addresses) for every list found in the DHT, bad ones skipped."""
        found = await self.dht.get(MEMBERS_KEY, latest=True, return_future=True)
        entries = getattr(found, "value", None)
        out = []
        for subkey, entry in (entries.items() if isinstance(entries, dict) else ()):
            owner = swarm_dht.subkey_owner(subkey, signed=True)
            value = getattr(entry, "value", None)
            if owner is None or owner == self.node.peer_id or not isinstance(value, dict):
                continue
            try:
                offered = ms.from_wire(value.get("list"), swarm_id=self.node.swarm_id)
            except ms.MembershipError as e:
                log.warning("ignoring a member list from %s: %s", owner[-8:], e)
                continue
            maddrs = [m for m in value.get("maddrs", ()) if isinstance(m, str) and m.endswith("/p2p/" + owner)]
            out.append((owner, offered, maddrs[:4]))
        return out

    async def merge(self) -> bool:
        """Merge the lists found in the DHT into the store; True if the stored list changed."""
        offers = await self.offers()
        return await asyncio.to_thread(self._merge, offers)

    def _merge(self, offers) -> bool:
        store, swarm_id = self.node.store, self.node.swarm_id
        with store_lock(store):
            current = store.membership(swarm_id)
            if current is None:
                return False
            merged = merge_offers(current, [(owner, offered) for owner, offered, _ in offers])
            if merged.owner == self.node.peer_id:
                merged = ms.confirm_all(merged, self.node.signer)  # what admins and members did stands from now on
            changed = not same_members(merged, current)
            if changed:
                merged = store.save_membership(swarm_id, merged)
            revoked = [x for x in merged.members if x.revoked]
            if revoked and store.cancel_invites_of(swarm_id, [x.peer_id for x in revoked],
                                                   [x.invite_id for x in revoked if x.invite_id]):
                log.warning("cancelled the invite codes that revoked members made or used")
            self.addresses.update({owner: maddrs for owner, _, maddrs in offers if maddrs})
            peers = [m for owner, _, maddrs in offers if ms.is_active_member(merged, owner) for m in maddrs]
            if peers and set(peers[:MAX_BOOTSTRAP]) != set(store.get(swarm_id).bootstrap):
                store.set_bootstrap(swarm_id, tuple(peers[:MAX_BOOTSTRAP]))
        return changed

    def known_members(self) -> dict[str, list[str]]:
        """Active members other than this node, with the addresses known for them (DHT lists, then bootstrap)."""
        m, me = self.node.membership(), self.node.peer_id
        known: dict[str, list[str]] = {}
        for maddr in self.node.store.get(self.node.swarm_id).bootstrap:
            known.setdefault(maddr.rsplit("/p2p/", 1)[-1], []).append(maddr)
        known.update(self.addresses)
        return {p: a for p, a in known.items() if p != me and ms.is_active_member(m, p)}

    async def tend_secret(self) -> None:
        """The owner rotates after a revocation; every node asks one member (all of them at first) for a newer
        secret."""
        if self.secrets is None or self.p2p is None:
            return
        known = await asyncio.to_thread(self.known_members)
        if await self.secrets.rotate_if_needed(self.p2p, known):
            return
        if known:
            order = sorted(known)
            ask = order if self.rounds == 0 else [order[self.rounds % len(order)]]
            await self.secrets.ask(self.p2p, {p: known[p] for p in ask})

    async def run_once(self) -> bool:
        await self.publish()
        changed = await self.merge()
        await self.tend_secret()
        self.rounds += 1
        if changed:
            self.changes += 1
            if self.on_change is not None:
                self.on_change()
        await swarm_dht.rejoin(self.dht, self.node.initial_peers())  # after an outage hivemind never retries
        return changed

    async def run_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.run_once(), max(60.0, 3 * self.period_seconds))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the DHT may be briefly unreachable; the next round retries
                log.warning("member list sync failed: %s", e)
            await asyncio.sleep(self.period_seconds)


@contextlib.asynccontextmanager
async def member_services(node: SwarmNode, dht, *, admit: MemberCheck | None = None, accept_joins: bool = True,
                          sync_period_seconds: float = DEFAULT_SYNC_PERIOD_SECONDS, node_file: bool = True,
                          advertise: bool = True) -> AsyncIterator["MemberServices"]:
    """Run the member list sync (and the join handler) on `dht` for as long as the context is open. With
    `advertise=False` (a client-mode DHT answers no one) this node's addresses are not offered as bootstrap."""
    p2p = await dht.replicate_p2p()
    own = [str(m) for m in await dht.run_coroutine(_VisibleMaddrs(), return_future=True)]
    pending: deque = deque(maxlen=16)  # keep the futures of fire-and-forget reloads alive

    def changed() -> None:
        pending.append(admission.reload_membership(dht, wait=False))
        if admit is not None:
            admit.reload()

    def new_secret(secret: bytes) -> None:  # old tokens pass for one period, then the new secret alone
        pending.append(admission.install_secret(dht, secret, grace_seconds=sync_period_seconds))

    secrets = SecretService(node, on_secret=new_secret)
    services = MemberServices(
        JoinService(node, lambda: own, on_joined=changed),
        MembershipSync(node, dht, own if advertise else [], period_seconds=sync_period_seconds, on_change=changed,
                       secrets=secrets, p2p=p2p),
        secrets,
    )
    with swarm_dht.private_umask():  # this process's handler socket: this user only
        if accept_joins:
            await services.join.register(p2p)
        await secrets.register(p2p)
    task = asyncio.create_task(services.sync.run_forever())
    if node_file:
        write_node_file(node.swarm_id, node.peer_id, own)
    try:
        yield services
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if node_file:
            remove_node_file(node.swarm_id)
        if accept_joins:
            with contextlib.suppress(Exception):
                await p2p.remove_binary_stream_handler(JOIN_PROTOCOL)
        with contextlib.suppress(Exception):
            await p2p.remove_binary_stream_handler(SECRET_PROTOCOL)
        with contextlib.suppress(Exception):
            await p2p.shutdown()  # a replica: closes this process's connection to the daemon only


class MemberServices:
    def __init__(self, join: JoinService, sync: MembershipSync, secrets: SecretService):
        self.join, self.sync, self.secrets = join, sync, secrets


class _VisibleMaddrs:  # runs inside the DHT process
    async def __call__(self, dht, node):
        return [str(m) for m in await node.get_visible_maddrs()]
