"""Serving in a private swarm from the command line: `potluck serve --swarm NAME` (also what `potluck join` runs
once joined), where to listen, and telling the swarm about a revocation when no node runs on this PC.

The node listens on this PC's Tailscale address unless --host says otherwise (127.0.0.1: this PC only, for tests
and demos; 0.0.0.0: every interface, announcing the Tailscale address). It keeps the port it used last time, so
the addresses other members remember stay good across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import socket
import sys
from pathlib import Path

from potluck.core.cli import CliError

DEFAULT_MEMBERSHIP_PERIOD_SECONDS = 10.0


def resolve_host(host: str | None) -> tuple[str, str | None]:
    """(address to listen on, address to announce or None). Default: this PC's Tailscale IPv4."""
    from potluck.core.swarm import tailscale

    if host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise CliError(f"--host {host!r} is not an IPv4 address") from None
        if host != "0.0.0.0":
            return host, None
        try:
            return host, str(tailscale.find_tailnet_ipv4().ipv4)
        except tailscale.TailnetError:
            return host, None
    try:
        return str(tailscale.find_tailnet_ipv4().ipv4), None
    except tailscale.TailnetError as e:
        raise CliError(f"{e} To try Potluck on this PC alone, pass --host 127.0.0.1.") from None


def free_port(host: str, preferred: int = 0) -> int:
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as p2pd does: a port in TIME_WAIT is free
            try:
                s.bind(("" if host == "0.0.0.0" else host, port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise CliError(f"no free port on {host}")


def _port_file(swarm_id: str) -> Path:
    from potluck.core import paths

    return paths.data_dir() / "run" / f"{swarm_id}.port"


def _remembered_port(swarm_id: str) -> int:
    try:
        port = int(_port_file(swarm_id).read_text())
        return port if 0 < port < 65536 else 0
    except (OSError, ValueError):
        return 0


def _remember_port(swarm_id: str, maddrs: list[str]) -> None:
    from potluck.core import paths

    ports = {int(m.split("/")[4]) for m in maddrs if m.count("/") >= 4 and m.split("/")[4].isdigit()}
    if len(ports) == 1:
        paths.ensure_dir(_port_file(swarm_id).parent, 0o700)
        _port_file(swarm_id).write_text(str(ports.pop()))


def serve_in_swarm(args: argparse.Namespace) -> int:
    """`potluck serve --swarm NAME` (and `potluck join` once joined): serve as this PC's member identity."""
    from potluck.core.commands_swarm import _user_errors

    return _user_errors(_serve_in_swarm)(args)


def _serve_in_swarm(args: argparse.Namespace) -> int:
    from potluck.core.commands import print_ready
    from potluck.core.model.loading import parse_dtype
    from potluck.core.server.runner import ServeOptions, serve_forever
    from potluck.core.server.server import ServerConfig
    from potluck.core.swarm import reachability, secure
    from potluck.core.swarm import services as member_services_module  # imported before the DHT process starts
    from potluck.core.swarm.store import SwarmStore

    period = args.membership_period
    store = SwarmStore()
    node = secure.open_swarm(args.swarm, store, refresh_seconds=min(secure.DEFAULT_REFRESH_SECONDS, period / 2))
    parse_dtype(args.dtype, args.device)
    host, announce = resolve_host(args.host)
    port = args.port or _remembered_port(node.swarm_id)
    port = free_port(host, port) if (port or announce) else 0
    known = node.initial_peers()
    peers = tuple(asyncio.run(reachability.reachable(list(known)))) if known else ()
    if known and not peers:
        print(f"no known member of {node.info.name!r} answers right now; serving anyway and retrying every "
              f"{period:g} s", file=sys.stderr, flush=True)
    admit = node.admit()
    options = ServeOptions(
        model=args.model or node.info.model_id, blocks=args.blocks, num_blocks=args.num_blocks, dtype=args.dtype,
        device=args.device, revision=args.revision or node.info.model_revision or None,
        dht=dataclasses.replace(node.dht_options(host, port, initial_peers=peers, announce_host=announce),
                                announce_port=getattr(args, "announce_port", None)),
        server=ServerConfig(name=getattr(args, "name", None) or _own_name(node), cache_tokens=args.cache_tokens,
                            max_session_tokens=args.max_session_tokens),
        admit=admit,
        attach=lambda dht: member_services_module.member_services(node, dht, admit=admit, sync_period_seconds=period),
    )

    def on_ready(server) -> None:
        print(f"swarm {node.info.name} (id {node.swarm_id}) as member {node.peer_id}", flush=True)
        print_ready(server)
        _remember_port(node.swarm_id, [str(m) for m in server.record().addrs])

    with secure.node_lock(node.swarm_id):
        serve_forever(options, on_ready)
    print("stopped", flush=True)
    return 0


def _own_name(node) -> str:
    m = node.membership()
    me = m.get(node.peer_id) if m is not None else None
    return me.name if me is not None else ""


def tell_swarm(info, store, host_arg: str | None) -> bool:
    """With no node running here: join the swarm's DHT briefly and publish the changed member list."""
    from potluck.core.swarm import reachability, secure
    from potluck.core.swarm import services as member_services_module
    from potluck.core.swarm.dht import start_dht

    try:
        node = secure.open_swarm(info.swarm_id, store)
    except secure.SwarmAccessError:
        return False
    peers = asyncio.run(reachability.reachable(list(node.initial_peers())))
    if not peers:
        return False
    host, _ = resolve_host(host_arg)
    dht = start_dht(node.dht_options(host, 0, initial_peers=tuple(peers)))
    try:
        sync = member_services_module.MembershipSync(node, dht, [], period_seconds=DEFAULT_MEMBERSHIP_PERIOD_SECONDS)
        return bool(asyncio.run(sync.publish()))
    finally:
        dht.shutdown()
