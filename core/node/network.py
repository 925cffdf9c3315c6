"""The node's place in the swarm: its DHT (started once, on the first start or chat, and kept across pauses, so
the chat still works while paused) and the settings a BlockServer needs to join with it.

Plain mode (`NodeNetwork`): an open DHT (no member list), joined through `initial_peers`, or a new swarm when
there are none. It listens on 127.0.0.1 unless the settings or POTLUCK_HOST give an address: an open swarm
admits anyone who can reach it, so it is never put on the tailnet by default. Private swarms:
core/node/private.py.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

from potluck.core.node.config import NodeConfig
from potluck.core.swarm.lifecycle import HOST_ENV, LOOPBACK, choose_listen_address

log = logging.getLogger(__name__)

_dht_owner: ThreadPoolExecutor | None = None
_dht_owner_lock = threading.Lock()


def start_dht_owned(options):
    """core.swarm.dht.start_dht on one thread that lives as long as the process, whoever calls.

    start_dht arms PR_SET_PDEATHSIG in the DHT's child process, and Linux sends that signal when the *thread* that
    forked the child ends. A DHT started on a short-lived thread (a chat worker, an asyncio.to_thread worker that
    retires) would die with it."""
    global _dht_owner
    from potluck.core.swarm.dht import start_dht

    with _dht_owner_lock:
        if _dht_owner is None:
            _dht_owner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="potluck-dht-owner")
    return _dht_owner.submit(start_dht, options).result()


class NodeNetwork:
    """The node's DHT and what serving in it takes (DHT options, the admission check). Thread-safe `ensure`."""
    def __init__(self, config: NodeConfig, environ=os.environ):
        self.config = config
        self._environ = environ
        self.dht = None
        self.host = ""
        self.admit = None  # who may call our server; None admits everyone (plain mode)
        self._lock = threading.Lock()
        self._services = AsyncExitStack()

    @property
    def initial_peers(self) -> tuple[str, ...]:
        return self.config.initial_peers

    @property
    def model(self) -> str:
        """The model this swarm runs (the settings' model; a private swarm may know it from its invite)."""
        return self.config.model

    @property
    def revision(self) -> str | None:
        return None

    @property
    def quant(self) -> str:
        """The weight precision this PC serves at (a private swarm's spec decides; else the settings)."""
        return self.config.quant

    def dht_options(self):
        from potluck.core.swarm.dht import DHTOptions

        return DHTOptions(initial_peers=self.initial_peers, host=self.host, port=self.config.port)

    def _listen_host(self) -> str:

        if not (self.config.host or self._environ.get(HOST_ENV, "").strip()):
            return LOOPBACK
        return choose_listen_address(self.config.host or None, environ=self._environ).host

    def ensure(self):
        """Start the DHT unless it runs (blocking: a second or two). Raises RuntimeError saying why it failed."""
        with self._lock:
            if self.dht is None:
                from potluck.core.swarm.dht import visible_maddrs

                self.host = self.host or self._listen_host()
                self.dht = start_dht_owned(self.dht_options())
                peers = self.initial_peers
                what = "joined the swarm through " + ", ".join(peers) if peers else "started a new swarm"
                log.info("%s; this PC's swarm address: %s", what, " ".join(visible_maddrs(self.dht)))
            return self.dht

    @property
    def peer_id(self) -> str:
        return self.dht.peer_id.to_base58() if self.dht is not None else ""

    def maddrs(self) -> list[str]:
        if self.dht is None:
            return []
        from potluck.core.swarm.dht import visible_maddrs

        try:
            return visible_maddrs(self.dht)
        except Exception:  # the DHT process is gone
            return []

    async def start_services(self) -> None:
        """Services that run as long as the DHT does (none in plain mode)."""

    async def close(self) -> None:
        await self._services.aclose()
        with self._lock:
            dht, self.dht = self.dht, None
        if dht is not None:
            import asyncio

            await asyncio.to_thread(dht.shutdown)
