"""Streams from the node's chat client to the node's own BlockServer, without the network.

The chat client shares the node's DHT, so it has the server's peer id, and libp2p refuses to dial its own peer id
("Connect failed"): a reply could never use this PC's own blocks. `LoopbackP2P` wraps the client's p2p replica:
a stream to any other peer goes through p2pd as usual; a stream to ourselves becomes a local socket pair whose
far end is handed to the server's own stream handler on the server's event loop (admission check included), so
the client's wire protocol runs unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

LOOPBACK_ADDR = "/ip4/127.0.0.1/tcp/0"  # what the server's handler sees as the caller's address


@dataclass(frozen=True)
class LocalServer:
    """The node's serving server right now: its stream handlers and the loop they run on."""

    peer_id: str
    handler_for: Callable[[str], Callable | None]  # protocol -> async handler(stream_info, reader, writer), or None
    loop: asyncio.AbstractEventLoop


class LoopbackP2P:
    """A p2p replica whose streams to `local().peer_id` stay in this process. Everything else is delegated."""

    def __init__(self, p2p, local: Callable[[], LocalServer | None]):
        self._p2p, self._local = p2p, local

    def __getattr__(self, name):
        return getattr(self._p2p, name)

    async def call_binary_stream_handler(self, peer_id, handler_name: str):
        local = self._local()
        if local is not None and peer_id.to_base58() == local.peer_id:
            handler = local.handler_for(handler_name)
            if handler is not None:
                return await _open_local_stream(local, handler, peer_id, handler_name)
        return await self._p2p.call_binary_stream_handler(peer_id, handler_name)


async def _open_local_stream(local: LocalServer, handler, peer_id, protocol: str):
    from hivemind.p2p.p2p_daemon_bindings.datastructures import StreamInfo
    from hivemind.utils.multiaddr import Multiaddr

    ours, theirs = socket.socketpair()
    try:
        reader, writer = await asyncio.open_connection(sock=ours)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    info = StreamInfo(peer_id=peer_id, addr=Multiaddr(LOOPBACK_ADDR), proto=protocol)

    async def serve() -> None:
        server_reader, server_writer = await asyncio.open_connection(sock=theirs)
        try:
            await handler(info, server_reader, server_writer)
        finally:
            server_writer.close()

    future = asyncio.run_coroutine_threadsafe(serve(), local.loop)
    future.add_done_callback(_log_failure)
    return info, reader, writer


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a local stream to this PC's server failed: %s", future.exception())
