"""Block servers inside the test process (real hivemind DHTs and p2p daemons, one event-loop thread)."""

from __future__ import annotations

from potluck.core.client.loop_thread import LoopThread
from potluck.core.model.loading import load_blocks, open_model
from potluck.core.server.server import BlockServer, ServerConfig
from potluck.core.swarm.dht import DHTOptions, start_dht, visible_maddrs


class InProcessSwarm:
    def __init__(self, model_dir, ranges, *, config: ServerConfig | None = None, quant: str = "none"):
        self.model_dir, self.ranges, self.quant = str(model_dir), list(ranges), quant
        self.config = config or ServerConfig(announce_period_seconds=2.0, record_ttl_seconds=6.0)
        self.spec = open_model(self.model_dir)
        self.loop = LoopThread()
        self.servers: list[BlockServer] = []
        self.dhts = []

    @property
    def initial_peers(self) -> list[str]:
        return visible_maddrs(self.dhts[0])

    def add(self, start: int, end: int, config: ServerConfig | None = None) -> BlockServer:
        dht = start_dht(DHTOptions(initial_peers=tuple(self.initial_peers) if self.dhts else ()))
        self.dhts.append(dht)
        stack = load_blocks(self.spec, start, end, quant=self.quant)
        server = self.loop.run(BlockServer.create(self.spec, stack, dht, config or self.config), timeout=60)
        self.servers.append(server)
        return server

    def stop_server(self, server: BlockServer, drain: bool = False) -> None:
        if drain:
            self.loop.run(server.drain(), timeout=60)
        self.loop.run(server.shutdown(), timeout=30)
        index = self.servers.index(server)
        self.servers.pop(index)
        self.dhts.pop(index).shutdown()

    def __enter__(self) -> "InProcessSwarm":
        try:
            for start, end in self.ranges:
                self.add(start, end)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for server in list(self.servers):
            try:
                self.loop.run(server.shutdown(), timeout=30)
            except Exception:
                pass
        for dht in self.dhts:
            dht.shutdown()
        self.servers, self.dhts = [], []
        self.loop.stop()
