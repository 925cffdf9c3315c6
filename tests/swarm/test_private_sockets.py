"""Issue 13, finding 11: p2pd's control socket (and hivemind's handler socket) live in /tmp and followed the
process umask; under umask 000 any local user could connect, drive the node's identity, or hand it streams with
made-up peer ids. DHTs now start under umask 077."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from potluck.core.swarm.dht import DHTOptions, private_umask, start_dht

pytestmark = pytest.mark.slow


async def _socket_paths(dht, node) -> list[str]:  # runs inside the DHT process
    maddrs = [node.p2p.daemon_listen_maddr, node.p2p._client_listen_maddr]
    return [str(m).split("/unix", 1)[1] for m in maddrs if str(m).startswith("/unix")]


async def _handler_socket_mode(dht) -> int:
    """Register a stream handler on a replica as core/swarm/services.py does; the mode of the socket p2pd calls it
    through."""
    p2p = await dht.replicate_p2p()

    async def nothing(stream_info, reader, writer):
        writer.close()

    with private_umask():
        await p2p.add_binary_stream_handler("/potluck/test/1", nothing)
    await asyncio.sleep(0.2)
    mode = stat.S_IMODE(os.stat(str(p2p._client_listen_maddr).split("/unix", 1)[1]).st_mode)
    await p2p.shutdown()
    return mode


def test_the_daemons_sockets_are_private_whatever_the_umask():
    old = os.umask(0)  # another program (or a user's shell profile) left the umask wide open
    dht = None
    try:
        dht = start_dht(DHTOptions())
        assert os.umask(0) == 0  # start_dht gave the process its umask back
        daemon, client = dht.run_coroutine(_socket_paths)
        assert os.path.exists(daemon), daemon  # p2pd's control socket: whoever connects drives this identity
        modes = {p: stat.S_IMODE(os.stat(p).st_mode) for p in (daemon, client) if os.path.exists(p)}
        modes["a member service's handler socket"] = asyncio.run(_handler_socket_mode(dht))
        assert all(mode & 0o077 == 0 for mode in modes.values()), {p: oct(m) for p, m in modes.items()}
    finally:
        os.umask(old)
        if dht is not None:
            dht.shutdown()


def test_private_umask_nests_and_restores():
    old = os.umask(0o002)
    try:
        with private_umask():
            with private_umask():
                assert os.umask(0o077) == 0o077
            assert os.umask(0o077) == 0o077
        assert os.umask(0o002) == 0o002
    finally:
        os.umask(old)
