"""Can two PCs open connections to each other, both ways? Plain TCP probes and the advice that goes with them.

A join needs both directions: this PC dials the inviter, and the inviter dials back the address this PC will
listen on (core/swarm/join.py asks it to). Tailscale node sharing breaks exactly one direction, so the answer is
worth explaining (core/swarm/tailscale.explain_reachability); what Tailscale itself says about the peer
(`tailscale status --json`) sharpens the advice when the command is there.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Sequence

from potluck.core.swarm import tailscale
from potluck.core.swarm.invite import InviteError, parse_multiaddr

PROBE_TIMEOUT_SECONDS = 3.0


def host_port(maddr: str) -> tuple[str, int]:
    """`/ip4/A/tcp/P[/p2p/ID]` -> (A, P). Raises ValueError."""
    parts = maddr.split("/")
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        raise ValueError(f"{maddr!r} is not an /ip4/<address>/tcp/<port> address")
    ipaddress.ip_address(parts[2])
    port = int(parts[4])
    if not 0 < port < 65536:
        raise ValueError(f"{maddr!r} has a bad port")
    return parts[2], port


async def can_connect(host: str, port: int, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """True if a TCP connection to host:port opens within `timeout` (it is closed at once; nothing is sent)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def reachable(maddrs: Sequence[str], timeout: float = PROBE_TIMEOUT_SECONDS) -> list[str]:
    """The multiaddrs among `maddrs` that accept a TCP connection (probed side by side)."""
    async def probe(maddr: str) -> bool:
        try:
            host, port = host_port(maddr)
        except ValueError:
            return False
        return await can_connect(host, port, timeout)

    results = await asyncio.gather(*(probe(m) for m in maddrs))
    return [m for m, ok in zip(maddrs, results) if ok]


def sharing_with(maddr: str, runner: tailscale.Runner = tailscale.run_command) -> tailscale.Sharing | None:
    """How Tailscale node sharing relates this PC to the peer at `maddr`, or None if Tailscale cannot say."""
    try:
        host, _ = host_port(maddr)
    except ValueError:
        return None
    if not tailscale.is_tailnet_ipv4(host):
        return None
    for program in tailscale.tailscale_programs():
        try:
            status = tailscale.parse_status_json(runner([program, "status", "--json"],
                                                        tailscale.COMMAND_TIMEOUT_SECONDS).stdout)
        except (OSError, ValueError, Exception):  # not installed, not running, or not JSON
            continue
        return tailscale.sharing_of(status, host)
    return None


def explain(maddr: str, we_reach_them: bool, they_reach_us: bool, *,
            sharing: tailscale.Sharing | None = None) -> tailscale.Reachability:
    """Advice for a join through `maddr` after the two probes."""
    try:
        address, port, _ = parse_multiaddr(maddr)
        peer, port = str(address), port
    except InviteError:
        peer, port = maddr, None
    verdict = tailscale.explain_reachability(we_reach_them, they_reach_us, peer=peer, port=port, sharing=sharing)
    if not we_reach_them and sharing is tailscale.Sharing.SHAREE:
        extra = (f" Tailscale says this PC is shared with {peer}'s owner: such a PC can answer {peer} but never "
                 "connect to it. Ask your friend to share their PC with you too, or to add you to their tailnet.")
        return tailscale.Reachability(False, verdict.verdict, verdict.message + extra)
    return verdict
