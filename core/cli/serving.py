"""`potluck serve`: host a range of blocks, in an open swarm or as a member of a private one (`--swarm NAME`).

A server prints its multiaddrs, then `ready`; SIGTERM or Ctrl-C drains (sessions move or finish) and stops.
"""

from __future__ import annotations

import argparse
import dataclasses

from potluck.core.cli.common import CliError, block_range, positive_int, print_ready, seconds
from potluck.core.cli.progress import TerminalProgress
from potluck.core.swarm import lifecycle, secure

DEFAULT_MEMBERSHIP_PERIOD_SECONDS = 10.0  # core.swarm.lifecycle's default, repeated here so --help stays light

_SWARM_HELP = ("serve in this private swarm (a name or id from `potluck swarms`): only its members can reach this "
               "server; listens on this PC's Tailscale address unless --host is given")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="host a range of blocks for the swarm")
    p.add_argument("--model", help="a model folder or Hugging Face id (with --swarm: default the swarm's model)")
    add_block_options(p)
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; with --swarm: this PC's "
                   "Tailscale address; 0.0.0.0 listens on every interface)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--announce-port", type=positive_int, default=None,
                   help="port other peers dial to reach this server (a forwarded port or relay), if not --port")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--initial-peers", nargs="+", default=[], metavar="MADDR")
    where.add_argument("--new-swarm", action="store_true", help="start a new swarm with this server as its first peer")
    where.add_argument("--swarm", metavar="NAME", help=_SWARM_HELP)
    add_compute_options(p)
    p.add_argument("--reserve-gib", type=float, default=2.0,
                   help="memory to leave free for your own programs; below it the server sheds blocks (default 2)")
    p.add_argument("--no-resize", action="store_true", help="keep the block range even when memory runs low")
    p.add_argument("--announce-period", type=float, default=10.0, metavar="SECONDS",
                   help="how often to re-announce in the swarm; records expire after 3 periods (default 10)")
    p.add_argument("--name", default="", help="how friends see this server")
    p.add_argument("--identity", default=None, help="private key file: keep the same peer id across restarts")
    p.add_argument("--no-batching", action="store_true", help="run every session's steps alone (benchmarks)")
    p.add_argument("--membership-period", type=seconds, default=DEFAULT_MEMBERSHIP_PERIOD_SECONDS, metavar="SECONDS",
                   help="with --swarm: how often this node shares and re-reads the member list (a revocation "
                   "spreads in about two periods)")
    p.set_defaults(handler=serve)


def add_block_options(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--blocks", type=block_range, help="host exactly these blocks, e.g. 0:8")
    which.add_argument("--num-blocks", type=positive_int,
                       help="host this many blocks (default: as many as free memory allows)")


PRECISIONS = ("none", "int8", "int4")


def add_compute_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default="auto", help="auto (the checkpoint's own: bfloat16 stays bfloat16), float32, "
                   "bfloat16, or float16 (GPU only)")
    p.add_argument("--quant", choices=PRECISIONS, default=None, help="store the blocks' weights at 8 or 4 bits "
                   "(about 0.27x / 0.16x the memory of float32; default none; with --swarm: the swarm's precision)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--cache-tokens", type=positive_int, default=8192, help="attention-cache budget, tokens per block")
    p.add_argument("--max-session-tokens", type=positive_int, default=4096)
    p.add_argument("--revision", default=None, help="model commit or branch (hub models)")


def serve(args: argparse.Namespace) -> int:
    if args.swarm:
        if args.identity:
            raise CliError("--swarm serves as this PC's member identity: drop --identity")
        return serve_as_member(args, args.swarm)
    if not args.new_swarm and not args.initial_peers:
        raise CliError("give --initial-peers to join a swarm, --new-swarm to start one, or --swarm NAME")
    if not args.model:
        raise CliError("give --model (a model folder or Hugging Face id)")
    from potluck.core.model.loading import check_dtype_name
    from potluck.core.server.runner import ServeOptions, serve_forever
    from potluck.core.swarm.dht import DHTOptions

    check_dtype_name(args.dtype, args.device)  # refuse float16 on CPU before loading anything
    options = ServeOptions(
        **_model_options(args, args.model, args.revision, args.quant or "none"),
        dht=DHTOptions(initial_peers=tuple(args.initial_peers), host=args.host or "127.0.0.1", port=args.port,
                       identity_path=args.identity, announce_port=args.announce_port),
        server=_server_config(args, args.name),
        reserve_bytes=int(args.reserve_gib * 2**30), resize=not args.no_resize,
    )
    serve_forever(options, print_ready)
    print("stopped", flush=True)
    return 0


def serve_as_member(args: argparse.Namespace, swarm: str) -> int:
    """Serve as this PC's member of a stored private swarm (also what `potluck join` runs once joined)."""
    import sys

    from potluck.core.model.loading import check_dtype_name
    from potluck.core.server.runner import ServeOptions, serve_forever

    check_dtype_name(args.dtype, args.device)
    member = lifecycle.prepare_member(swarm, host=args.host, port=args.port, period_seconds=args.membership_period)
    node = member.node
    if node.initial_peers() and not member.initial_peers:
        print(f"no known member of {node.info.name!r} answers right now; serving anyway and retrying every "
              f"{member.period_seconds:g} s", file=sys.stderr, flush=True)
    options = ServeOptions(
        **_model_options(args, args.model or node.info.model_id, args.revision or node.info.model_revision or None,
                         node.info.quant),
        dht=dataclasses.replace(member.dht_options(), announce_port=getattr(args, "announce_port", None)),
        server=_server_config(args, getattr(args, "name", None) or lifecycle.own_member_name(node)),
        admit=member.admit, attach=member.services,
    )

    def on_ready(server) -> None:
        print(f"swarm {node.info.name} (id {node.swarm_id}) as member {node.peer_id}", flush=True)
        print_ready(server)
        lifecycle.remember_port(node.swarm_id, [str(m) for m in server.record().addrs])

    with secure.node_lock(node.swarm_id):
        serve_forever(options, on_ready)
    print("stopped", flush=True)
    return 0


def _model_options(args: argparse.Namespace, model: str, revision: str | None, quant: str) -> dict:
    import sys

    progress = TerminalProgress(sys.stderr) if sys.stderr.isatty() else None  # a bar on a terminal, else quiet
    return dict(model=model, blocks=args.blocks, num_blocks=args.num_blocks, dtype=args.dtype, device=args.device,
                revision=revision, quant=quant, progress=progress)


def _server_config(args: argparse.Namespace, name: str):
    from potluck.core.server.server import ServerConfig

    period = getattr(args, "announce_period", 10.0)
    return ServerConfig(name=name, cache_tokens=args.cache_tokens, max_session_tokens=args.max_session_tokens,
                        announce_period_seconds=period, record_ttl_seconds=3 * period,
                        batching=not getattr(args, "no_batching", False))
