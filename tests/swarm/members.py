"""PCs of a private swarm inside the test process: each with its own store and identity, a real DHT (its own
process and p2pd), optionally a real BlockServer, and the member services (join handler, member-list sync).
Secrets go to whatever keyring the test installed (the same swarm has the same secret on every PC)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from potluck.core.model.loading import load_blocks
from potluck.core.server.server import BlockServer, ServerConfig
from potluck.core.swarm import secure
from potluck.core.swarm.dht import start_dht, visible_maddrs
from potluck.core.swarm.join import request_join
from potluck.core.swarm.services import member_services
from potluck.core.swarm.store import SwarmStore

PERIOD = 0.5  # seconds: member-list sync period in these tests (a real node uses 10)
REFRESH = 0.25  # seconds: how often the member list is re-read from the store
SERVER_CONFIG = ServerConfig(announce_period_seconds=1.0, record_ttl_seconds=4.0)


class Member:
    """One PC. With `home=True` it uses POTLUCK_HOME's store, identity and node file, like the real CLI and node,
    so that `potluck` commands run in this process act on it."""

    def __init__(self, name: str, folder: Path, loop, *, home: bool = False):
        self.name, self.loop, self.home = name, loop, home
        folder.mkdir(parents=True, exist_ok=True)
        self.store = SwarmStore() if home else SwarmStore(folder / "swarms.json")
        self._identity = folder / "identity.key"
        self.node: secure.SwarmNode | None = None
        self.dht = self.server = self.services = self.admit = None
        self._services_cm = None

    @property
    def identity(self) -> Path:
        return secure.identity_path(self.swarm_id) if self.home else self._identity

    @property
    def peer_id(self) -> str:
        return secure.peer_id_of_identity(self.identity)

    def create_swarm(self, swarm_name: str, model: str) -> str:
        secure.create_identity(self._identity)
        info, _ = self.store.create_swarm(swarm_name, model, "", creator=secure.load_signer(self._identity),
                                          creator_name=self.name)
        self.swarm_id = info.swarm_id
        if self.home:
            secure.identity_path(info.swarm_id).parent.mkdir(parents=True, exist_ok=True)
            self._identity.replace(secure.identity_path(info.swarm_id))
        return info.swarm_id

    def invite(self, **kw):
        return self.store.create_invite(self.node.swarm_id, tuple(visible_maddrs(self.dht)), created_by=self.peer_id,
                                        **kw)

    def join(self, invite) -> None:
        """The real handshake with the inviter's node, then remember the swarm (what `potluck join` does)."""
        self.swarm_id = invite.swarm_id
        secure.create_identity(self.identity)
        welcome, membership = self.loop.run(request_join(invite, self.identity, "127.0.0.1", self.name), timeout=60)
        self.store.add_joined_swarm(invite, welcome.secret, membership=membership, epoch=welcome.epoch,
                                    proof=welcome.proof)
        self.store.set_bootstrap(invite.swarm_id, welcome.bootstrap)

    def start(self, swarm: str, *, blocks=None, spec=None, client_mode=False, peers=None) -> "Member":
        self.node = secure.open_swarm(swarm, self.store, identity=self.identity, refresh_seconds=REFRESH)
        self.dht = start_dht(self.node.dht_options("127.0.0.1", 0, client_mode=client_mode, initial_peers=peers))
        self.admit = self.node.admit()
        self._services_cm = member_services(self.node, self.dht, admit=self.admit, accept_joins=not client_mode,
                                            sync_period_seconds=PERIOD, node_file=self.home, advertise=not client_mode)
        self.services = self.loop.run(self._services_cm.__aenter__(), timeout=30)
        if blocks is not None:
            stack = load_blocks(spec, *blocks)
            self.server = self.loop.run(BlockServer.create(spec, stack, self.dht, SERVER_CONFIG, admit=self.admit),
                                        timeout=60)
        return self

    @property
    def maddrs(self) -> list[str]:
        return visible_maddrs(self.dht)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.server is not None:
                self.loop.run(self.server.shutdown(), timeout=20)
        with contextlib.suppress(Exception):
            if self._services_cm is not None:
                self.loop.run(self._services_cm.__aexit__(None, None, None), timeout=20)
        if self.dht is not None:
            self.dht.shutdown()
        self.dht = self.server = self._services_cm = None


async def _read_authorizer_stats(dht, node) -> dict[str, int]:  # runs inside the DHT process
    return dict(node.protocol.authorizer.stats)


def authorizer_stats(dht) -> dict[str, int]:
    """Counts of accepted tokens and of refusals by reason, from a running DHT's authorizer (a test probe)."""
    return dht.run_coroutine(_read_authorizer_stats)


async def _token_refusal(token: bytes, dht, node) -> str | None:  # runs inside the DHT process
    from hivemind.proto.auth_pb2 import AccessToken

    return node.protocol.authorizer.refusal_reason(AccessToken.FromString(token))


def token_refusal(dht, token) -> str | None:
    """Why a running DHT's authorizer refuses `token` (an AccessToken), or None if it accepts it (a test probe)."""
    import functools

    return dht.run_coroutine(functools.partial(_token_refusal, token.SerializeToString()))
