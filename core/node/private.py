"""The node in a private swarm (core/swarm/lifecycle.py does the work; this adapts it to the node's settings).

mode "create": the swarm named in the settings, created on the first start (this PC's identity is its first
member); mode "join": the swarm of the invite code in POTLUCK_INVITE_CODE, joined through the inviter's node on
the first start (afterwards this PC simply rejoins as a member). Either way the DHT admits members only, the
server admits members only, and while the DHT runs the member list is kept in sync and friends can join through
this PC. `make_network` picks this or the plain network for the settings.
"""

from __future__ import annotations

import contextlib
import logging
import os

from potluck.core.errors import PotluckError
from potluck.core.node.config import NodeConfig
from potluck.core.node.network import NodeNetwork, start_dht_owned
from potluck.core.node.plan import NodeSetupError
from potluck.core.swarm import lifecycle, secure
from potluck.core.swarm.invite import InviteError
from potluck.core.swarm.join import JoinError
from potluck.core.swarm.store import SwarmNotFound, SwarmStore

log = logging.getLogger(__name__)

INVITE_ENV = "POTLUCK_INVITE_CODE"  # set by the app (app/secrets_store.py); never on a command line


def swarm_name_for(config: NodeConfig) -> str:
    """The swarm a create-mode node runs: the settings' name, else one made from the PC's name."""
    return (config.swarm_name or f"{config.pc_name or 'Potluck'}'s swarm").strip()[:64]


class PrivateNetwork(NodeNetwork):
    def __init__(self, config: NodeConfig, environ=os.environ):
        super().__init__(config, environ)
        self.member = None  # core.swarm.lifecycle.MemberSetup once opened
        self._locks = contextlib.ExitStack()
        self._services_started = False

    @property
    def swarm(self):
        return self.member.node if self.member is not None else None

    @property
    def initial_peers(self) -> tuple[str, ...]:
        return self.member.initial_peers if self.member is not None else ()

    @property
    def model(self) -> str:
        """The model to serve: the settings', else the swarm's."""
        return self.config.model or (self.swarm.info.model_id if self.swarm is not None else "")

    @property
    def revision(self) -> str | None:
        if self.swarm is None or self.model != self.swarm.info.model_id:
            return None
        return self.swarm.info.model_revision or None

    @property
    def quant(self) -> str:
        """The swarm's weight precision: every member serves at it (a mixed swarm would change the numbers)."""
        return self.swarm.info.quant if self.swarm is not None else self.config.quant

    def dht_options(self):
        return self.member.dht_options()

    def ensure(self):
        with self._lock:
            if self.dht is None:
                from potluck.core.swarm.dht import visible_maddrs

                try:
                    swarm_id = self._join() if self.config.mode == "join" else self._create()
                    self.member = lifecycle.prepare_member(swarm_id, host=self.config.host or None,
                                                           port=self.config.port, fallback_to_loopback=True,
                                                           environ=self._environ)
                    self._locks.enter_context(secure.node_lock(swarm_id))
                except NodeSetupError:
                    raise
                except PotluckError as exc:  # not a member any more, a used code, another node running…
                    raise NodeSetupError(f"{exc}.") from None
                self.host, self.admit = self.member.address.host, self.member.admit
                try:
                    self.dht = start_dht_owned(self.dht_options())
                except BaseException:
                    self._locks.close()  # a later try must be able to take the lock again
                    raise
                log.info("in private swarm %r (id %s) as member %s at %s", self.swarm.info.name, swarm_id,
                         self.swarm.peer_id, " ".join(visible_maddrs(self.dht)))
            return self.dht

    def _create(self) -> str:

        name = swarm_name_for(self.config)
        try:
            return secure.open_swarm(name, SwarmStore()).swarm_id
        except SwarmNotFound:
            pass
        if not self.config.model:
            raise NodeSetupError("No model is set. Choose one in Settings.")
        return lifecycle.create_swarm(name, self.config.model, member_name=self.config.pc_name,
                                      quant=self.config.quant).info.swarm_id

    def _join(self) -> str:

        code = self._environ.get(INVITE_ENV, "").strip()
        if not code:
            raise NodeSetupError("This PC has no invite code to join with. Paste your friend's code again.")
        address = lifecycle.choose_listen_address(self.config.host or None, environ=self._environ,
                                                  fallback_to_loopback=True)
        try:
            joined = lifecycle.join_swarm(code, address.host, self.config.pc_name or "A friend's PC",
                                          port=self.config.port)
        except InviteError as exc:
            raise NodeSetupError(f"The invite code cannot be used: {exc}") from None
        except JoinError as exc:
            raise NodeSetupError(f"Could not join: {exc}") from None
        if not joined.already_member:
            log.info("joined %r (id %s); %d member(s)", joined.info.name, joined.info.swarm_id, joined.members)
        return joined.info.swarm_id

    async def start_services(self) -> None:
        """The member list sync and the join handler, for as long as the DHT runs (paused or not)."""
        if self._services_started or self.dht is None:
            return
        await self._services.enter_async_context(self.member.services(self.dht))
        self._services_started = True

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._locks.close()


def make_network(config: NodeConfig, environ=os.environ) -> NodeNetwork:
    """The network for these settings: a private swarm (create, join), or an open one (plain)."""
    if config.mode in ("create", "join"):
        return PrivateNetwork(config, environ)
    return NodeNetwork(config, environ)
