"""The node in a private swarm from the swarm store (core.swarm.store / secure / services / join).

mode "create": the swarm named in the settings, created in the store on the first start (this PC's identity is
its first member); mode "join": the swarm of the invite code in POTLUCK_INVITE_CODE, joined through the inviter's
node on the first start (afterwards this PC simply rejoins as a member). Either way the DHT admits members only,
the server admits members only, and while the DHT runs the member list is kept in sync and friends can join
through this PC (the node file tells `potluck invite create` where this node listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from potluck.core.node.config import NodeConfig
from potluck.core.node.network import NodeNetwork, default_host, start_dht_owned
from potluck.core.node.plan import NodeSetupError

log = logging.getLogger(__name__)

INVITE_ENV = "POTLUCK_INVITE_CODE"  # set by the app (app/secrets_store.py); never on a command line


def swarm_name_for(config: NodeConfig) -> str:
    """The swarm a create-mode node runs: the settings' name, else one made from the PC's name."""
    return (config.swarm_name or f"{config.pc_name or 'Potluck'}'s swarm").strip()[:64]


class PrivateNetwork(NodeNetwork):
    def __init__(self, config: NodeConfig, environ=os.environ):
        super().__init__(config, environ)
        self.swarm = None  # core.swarm.secure.SwarmNode once opened
        self._peers: tuple[str, ...] = ()
        self._locks = contextlib.ExitStack()
        self._services_started = False

    @property
    def initial_peers(self) -> tuple[str, ...]:
        return self._peers

    @property
    def model(self) -> str:
        """The model to serve: the settings', else the swarm's."""
        return self.config.model or (self.swarm.info.model_id if self.swarm is not None else "")

    @property
    def revision(self) -> str | None:
        if self.swarm is None or self.model != self.swarm.info.model_id:
            return None
        return self.swarm.info.model_revision or None

    def dht_options(self):
        return self.swarm.dht_options(self.host, self.config.port, initial_peers=self._peers)

    def ensure(self):
        with self._lock:
            if self.dht is None:
                from potluck.core.swarm import reachability, secure, services  # noqa: F401  (services: before the DHT forks)
                from potluck.core.swarm.dht import visible_maddrs

                self.host = self.host or default_host(self.config, self._environ)
                self.swarm = self._open()
                try:
                    self._locks.enter_context(secure.node_lock(self.swarm.swarm_id))
                except secure.NodeAlreadyRunning as exc:
                    raise NodeSetupError(f"{exc}.") from None
                try:
                    known = self.swarm.initial_peers()
                    self._peers = tuple(asyncio.run(reachability.reachable(list(known)))) if known else ()
                    if known and not self._peers:
                        log.warning("no known member of %r answers right now; running anyway", self.swarm.info.name)
                    self.admit = self.swarm.admit()
                    self.dht = start_dht_owned(self.dht_options())
                except BaseException:
                    self._locks.close()  # a later try must be able to take the lock again
                    raise
                log.info("in private swarm %r (id %s) as member %s at %s", self.swarm.info.name, self.swarm.swarm_id,
                         self.swarm.peer_id, " ".join(visible_maddrs(self.dht)))
            return self.dht

    def _open(self):
        """This PC's SwarmNode: open the stored swarm, creating or joining it first if needed."""
        from potluck.core.swarm.store import StoreError

        try:
            return self._join() if self.config.mode == "join" else self._create()
        except StoreError as exc:  # not a member any more, no identity, several swarms of that name, ...
            raise NodeSetupError(f"{exc}.") from None

    def _create(self):
        from potluck.core.swarm import secure
        from potluck.core.swarm.store import SwarmNotFound, SwarmStore

        store, name = SwarmStore(), swarm_name_for(self.config)
        try:
            return secure.open_swarm(name, store)
        except SwarmNotFound:
            pass
        if not self.config.model:
            raise NodeSetupError("No model is set. Choose one in Settings.")
        pending = secure.identity_path("0" * 16).parent / f".new-{os.getpid()}.key"
        peer_id = secure.create_identity(pending)
        try:
            with secure.store_lock(store):
                info, _location = store.create_swarm(name, self.config.model, "", creator_peer_id=peer_id,
                                                     creator_name=self.config.pc_name[:64])
            pending.replace(secure.identity_path(info.swarm_id))
        finally:
            pending.unlink(missing_ok=True)
        log.info("created private swarm %r (id %s) with this PC as its first member", name, info.swarm_id)
        return secure.open_swarm(info.swarm_id, store)

    def _join(self):
        from potluck.core.swarm import secure
        from potluck.core.swarm.invite import InviteError, decode_invite
        from potluck.core.swarm.join import JoinError, request_join
        from potluck.core.swarm.store import SwarmNotFound, SwarmStore

        code = self._environ.get(INVITE_ENV, "").strip()
        if not code:
            raise NodeSetupError("This PC has no invite code to join with. Paste your friend's code again.")
        try:
            invite = decode_invite(code, allow_expired=True)
        except InviteError as exc:
            raise NodeSetupError(f"The invite code cannot be used: {exc}") from None
        store = SwarmStore()
        try:
            return secure.open_swarm(invite.swarm_id, store)  # joined before: a member already
        except (SwarmNotFound, secure.SwarmAccessError):
            pass
        try:
            invite = decode_invite(code)  # a code that expired can still reopen a swarm joined earlier, not join one
        except InviteError as exc:
            raise NodeSetupError(f"The invite code cannot be used: {exc}") from None
        path = secure.identity_path(invite.swarm_id)
        secure.create_identity(path)
        name = (self.config.pc_name or "A friend's PC")[:64]
        log.info("joining %r (%s) as %r", invite.swarm_name, invite.model_id, name)
        try:
            welcome, membership = asyncio.run(request_join(invite, path, self.host, name, port=self.config.port))
        except JoinError as exc:
            raise NodeSetupError(f"Could not join {invite.swarm_name!r}: {exc}") from None
        with secure.store_lock(store):
            info, _location = store.add_joined_swarm(invite, welcome.secret, membership=membership)
            store.set_bootstrap(info.swarm_id, tuple(dict.fromkeys(welcome.bootstrap + invite.bootstrap))[:8])
        log.info("joined %r (id %s); %d member(s)", info.name, info.swarm_id, len(membership.active))
        return secure.open_swarm(info.swarm_id, store)

    async def start_services(self) -> None:
        """The member list sync and the join handler, for as long as the DHT runs (paused or not)."""
        if self._services_started or self.dht is None:
            return
        from potluck.core.swarm.services import member_services

        await self._services.enter_async_context(member_services(self.swarm, self.dht, admit=self.admit))
        self._services_started = True

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._locks.close()
