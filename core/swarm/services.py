"""What a member's node runs beside its block server: the member list shared through the DHT, rejoining after an
outage, the join handler for invite codes made on this PC, and the node file `potluck invite create` reads.

Member list. Every period each node stores its signed list under `potluck.members` (subkey: its own, signed, see
core/swarm/dht.owner_subkey) together with its listen addresses, reads everyone's, and merges into its store the
lists of peers that are active members in its own list (`merge_offers`): a revocation made on any PC reaches
every node within about two periods, and a node never takes a list from a peer it knows as revoked. The DHT
authorizer and the servers' member check re-read the store, so they follow within `refresh_seconds`.

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
            if offered.swarm_id == merged.swarm_id and ms.is_active_member(merged, owner):
                merged = ms.merge(merged, offered)
                pending.remove(offer)
                progress = True
    return merged


def same_members(a: ms.Membership | None, b: ms.Membership | None) -> bool:
    key = lambda m: sorted((x.peer_id, x.revoked) for x in m.members) if m is not None else None  # noqa: E731
    return key(a) == key(b)


class MembershipSync:
    """Publishes this node's list and merges the others' (see the module doc)."""

    def __init__(self, node: SwarmNode, dht, own_maddrs: Sequence[str], *,
                 period_seconds: float = DEFAULT_SYNC_PERIOD_SECONDS, on_change=None):
        self.node, self.dht, self.own_maddrs = node, dht, list(own_maddrs)
        self.period_seconds, self.on_change = period_seconds, on_change
        self.rounds = 0  # completed rounds
        self.changes = 0  # rounds that changed the stored list

    async def publish(self) -> bool:
        signed = self.node.store.get(self.node.swarm_id).membership
        if signed is None:
            return False
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
                offered = ms.verify_membership(value.get("list"), self.node.secret, swarm_id=self.node.swarm_id)
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
            changed = not same_members(merged, current)
            if changed:
                store.save_membership(swarm_id, merged)
            peers = [m for owner, _, maddrs in offers if ms.is_active_member(merged, owner) for m in maddrs]
            if peers and set(peers[:MAX_BOOTSTRAP]) != set(store.get(swarm_id).bootstrap):
                store.set_bootstrap(swarm_id, tuple(peers[:MAX_BOOTSTRAP]))
        return changed

    async def run_once(self) -> bool:
        await self.publish()
        changed = await self.merge()
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

    services = MemberServices(
        JoinService(node, lambda: own, on_joined=changed),
        MembershipSync(node, dht, own if advertise else [], period_seconds=sync_period_seconds, on_change=changed),
    )
    if accept_joins:
        await services.join.register(p2p)
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
            await p2p.shutdown()  # a replica: closes this process's connection to the daemon only


class MemberServices:
    def __init__(self, join: JoinService, sync: MembershipSync):
        self.join, self.sync = join, sync


class _VisibleMaddrs:  # runs inside the DHT process
    async def __call__(self, dht, node):
        return [str(m) for m in await node.get_visible_maddrs()]
