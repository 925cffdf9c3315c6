"""Opening hivemind streams to a peer, with a timeout and a dial through its announced addresses."""

from __future__ import annotations

import asyncio
from typing import Sequence

from hivemind.p2p import P2P, PeerID
from hivemind.utils.multiaddr import Multiaddr

SESSION_PROTOCOL = "/potluck/session/1"  # client <-> server: open, steps, history, close
PUSH_PROTOCOL = "/potluck/push/1"  # server -> next server: one session's outputs
PING_PROTOCOL = "/potluck/ping/1"  # round-trip probe and server info


class PeerUnreachableError(ConnectionError):
    """The peer could not be reached on any address in time."""


async def open_stream(
    p2p: P2P, peer_id: str, protocol: str, addrs: Sequence[str] = (), timeout_seconds: float = 5.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a stream to `peer_id`, dialling its announced `addrs` first if the daemon does not know the peer."""
    pid = PeerID.from_base58(peer_id)
    try:
        _, reader, writer = await asyncio.wait_for(p2p.call_binary_stream_handler(pid, protocol), timeout_seconds)
        return reader, writer
    except (asyncio.TimeoutError, Exception) as first_error:  # p2pd reports unknown routes as a generic error
        if not addrs:
            raise PeerUnreachableError(f"cannot reach {peer_id[-8:]}: {first_error or 'timed out'}") from None
    try:
        dial = [Multiaddr(a.rsplit("/p2p/", 1)[0]) for a in addrs]  # p2pd refuses addresses that end in /p2p/<id>
        await asyncio.wait_for(p2p._client.connect(pid, dial), timeout_seconds)
        _, reader, writer = await asyncio.wait_for(p2p.call_binary_stream_handler(pid, protocol), timeout_seconds)
        return reader, writer
    except Exception as e:
        raise PeerUnreachableError(f"cannot reach {peer_id[-8:]} at {', '.join(addrs)}: {e or 'timed out'}") from None


def close_writer(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        try:
            writer.close()
        except Exception:  # the stream may already be gone; closing is best effort
            pass
