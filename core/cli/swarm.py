"""The private-swarm commands (core/swarm/lifecycle.py does the work):

    potluck swarm create --name N --model M [--revision R]
    potluck swarms
    potluck invite create [--swarm NAME] [--expires 7d] [--uses N] | show CODE | - | cancel INVITE_ID
    potluck join CODE | - [--name NAME] [--no-serve] [serve options]
    potluck members [--swarm NAME] [--json]
    potluck revoke PEER [--swarm NAME]

Secrets never appear on a command line or in a log: the swarm secret goes to the keyring or a private file, and
invite codes (a one-time capability) can be read from standard input with `-`.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

from potluck.core.cli.common import CliError, print_json, seconds
from potluck.core.cli.serving import (
    DEFAULT_MEMBERSHIP_PERIOD_SECONDS,
    PRECISIONS,
    add_block_options,
    add_compute_options,
    serve_as_member,
)
from potluck.core.swarm import lifecycle, secure
from potluck.core.swarm import membership as ms
from potluck.core.swarm.invite import describe_invite, encode_invite, format_utc
from potluck.core.swarm.lifecycle import describe_invite_code
from potluck.core.swarm.secure import running_node
from potluck.core.swarm.store import SwarmStore, parse_duration
from potluck.core.swarm.tailscale import is_tailnet_ipv4

_CODE_HELP = ("the invite code, or - to read it from standard input. Reading it from stdin is safer: a code on the "
              "command line can be seen by other programs on this PC and stays in your shell history")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("swarm", help="create a private swarm")
    actions = p.add_subparsers(dest="swarm_command", metavar="ACTION", required=True)
    c = actions.add_parser("create", help="a new private swarm with this PC as its first member")
    c.add_argument("--name", required=True, help="what your friends will see, e.g. 'Friday club'")
    c.add_argument("--model", required=True, help="Hugging Face model id (or a local model folder)")
    c.add_argument("--revision", default="", help="model commit or branch (default: the repo's default branch)")
    c.add_argument("--member-name", default=None, help="how this PC appears in the member list (default: host name)")
    c.add_argument("--quant", choices=PRECISIONS, default="none", help="the weight precision every member serves "
                   "at: none, int8 (about 0.27x the memory of float32) or int4 (about 0.16x)")
    c.set_defaults(handler=create_swarm)

    sub.add_parser("swarms", help="the private swarms this PC knows").set_defaults(handler=list_swarms)

    p = sub.add_parser("invite", help="make or inspect invite codes")
    actions = p.add_subparsers(dest="invite_command", metavar="ACTION", required=True)
    c = actions.add_parser("create", help="a code that lets one friend join (needs this swarm's node running)")
    c.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    c.add_argument("--expires", default="7d", help="how long the code works: 30m, 12h, 7d, 2w (default 7d)")
    c.add_argument("--uses", type=int, default=1, help="how many joins it allows (default 1; 0 = until it expires)")
    c.add_argument("--bootstrap", nargs="+", metavar="MADDR", help="join through these addresses instead of this "
                   "PC's running node")
    c.set_defaults(handler=create_invite)
    c = actions.add_parser("show", help="decode a code without joining")
    c.add_argument("code", nargs="?", default="-", metavar="CODE", help=_CODE_HELP)
    c.set_defaults(handler=show_invite)
    c = actions.add_parser("cancel", help="stop a code made on this PC from working")
    c.add_argument("invite_id", help="the code's id, as `potluck invite show` prints it")
    c.set_defaults(handler=cancel_invite)

    p = sub.add_parser("join", help="join a private swarm with an invite code, then serve in it",
                       description="Join a private swarm with an invite code. " + _CODE_HELP + ".")
    p.add_argument("code", nargs="?", default="-", metavar="CODE", help=_CODE_HELP)
    p.add_argument("--name", default=None, help="how your friends see this PC (default: its host name)")
    p.add_argument("--no-serve", action="store_true", help="only join; serve later with `potluck serve --swarm`")
    p.add_argument("--model", default=None, help="a local folder with the swarm's model (default: the swarm's model id)")
    add_block_options(p)
    p.add_argument("--host", default=None, help="address to listen on (default: this PC's Tailscale address; "
                   "127.0.0.1 to try Potluck on this PC only; 0.0.0.0 listens everywhere)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: the one used last time)")
    add_compute_options(p)
    p.add_argument("--membership-period", type=seconds, default=DEFAULT_MEMBERSHIP_PERIOD_SECONDS, metavar="SECONDS",
                   help="how often this node shares and re-reads the member list")
    p.set_defaults(handler=join)

    p = sub.add_parser("members", help="who belongs to a private swarm")
    p.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=members)

    p = sub.add_parser("revoke", help="remove a member from a private swarm, for good")
    p.add_argument("peer", metavar="PEER", help="member name, peer id, or a unique start of one (6+ characters)")
    p.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    p.add_argument("--host", default=None, help="address to tell the swarm from when no node runs here "
                   "(default: this PC's Tailscale address)")
    p.set_defaults(handler=revoke)


# ---- helpers --------------------------------------------------------------------------------------------------------
def read_code(text: str | None) -> str:
    if text not in (None, "-"):
        return text
    if sys.stdin.isatty():
        print("Paste the invite code and press Enter:", file=sys.stderr)
        return sys.stdin.readline()
    return sys.stdin.read(8192)


def pick_swarm(store, swarm: str | None):
    if swarm:
        return store.get(swarm)
    swarms = store.list_swarms()
    if len(swarms) == 1:
        return swarms[0]
    if not swarms:
        raise CliError("this PC is in no private swarm yet: `potluck swarm create` or `potluck join`")
    raise CliError("this PC knows several swarms; say which with --swarm: " + ", ".join(s.name for s in swarms))


def secret_place(location) -> str:
    if location.kind == "keyring":
        return "the swarm secret is in this PC's keyring"
    return f"the swarm secret is in {location.path}, readable only by you (no usable keyring on this PC)"


def dialable(maddrs: list[str]) -> list[str]:
    """The addresses worth putting in a code: tailnet ones, else any non-loopback, else loopback (tests, demos)."""
    def host(m: str) -> str:
        return m.split("/")[2] if m.count("/") >= 3 else ""

    tailnet = [m for m in maddrs if is_tailnet_ipv4(host(m))]
    if tailnet:
        return tailnet
    other = [m for m in maddrs if not host(m).startswith("127.") and host(m) != "::1"]
    return other or list(maddrs)


def _own_peer_id(swarm_id: str) -> str | None:

    path = secure.identity_path(swarm_id)
    return secure.peer_id_of_identity(path) if path.exists() else None


# ---- swarm create / swarms ------------------------------------------------------------------------------------------
def create_swarm(args: argparse.Namespace) -> int:

    created = lifecycle.create_swarm(args.name, args.model, args.revision, member_name=args.member_name or "",
                                     quant=args.quant)
    info = created.info
    print(f"Created swarm {info.name!r} (id {info.swarm_id}) for {info.model_id}"
          + (f" @ {info.model_revision}" if info.model_revision else "")
          + (f", weights at {info.quant}" if info.quant != "none" else ""))
    print(f"This PC is its first member: {created.peer_id}")
    print(f"Secret: {secret_place(created.secret_location)}.")
    print(f"Next: `potluck serve --swarm {info.name!r}`, then `potluck invite create --swarm {info.name!r}` for each friend.")
    return 0


def list_swarms(args: argparse.Namespace) -> int:

    store = SwarmStore()
    swarms = store.list_swarms()
    if not swarms:
        print("this PC is in no private swarm yet: `potluck swarm create` or `potluck join`")
    for info in swarms:
        m = store.membership(info.swarm_id)
        count = len(m.active) if m is not None else 0
        state = "node running" if running_node(info.swarm_id) else "node stopped"
        print(f"{info.name}  (id {info.swarm_id})  {info.model_id}  {count} member(s)  {state}")
    return 0


# ---- invites ---------------------------------------------------------------------------------------------------------
def create_invite(args: argparse.Namespace) -> int:
    store = SwarmStore()
    info = pick_swarm(store, args.swarm)
    if not 0 <= args.uses <= 65535:
        raise CliError("--uses must be between 0 (until it expires) and 65535")
    bootstrap = args.bootstrap
    if not bootstrap:
        running = secure.running_node(info.swarm_id)
        if running is None:
            raise CliError(f"start this PC's node of {info.name!r} first (`potluck serve --swarm {info.name!r}`): "
                           "the code tells your friend's PC where to find it, and this node admits them")
        bootstrap = dialable(running["maddrs"])
    with secure.store_lock(store):
        invite = store.create_invite(info.swarm_id, tuple(bootstrap[:8]), expires_in_seconds=parse_duration(args.expires),
                                     max_uses=args.uses or None)
    print(describe_invite(invite), file=sys.stderr)
    print("Send this code to your friend over a chat you trust; it works like a password until it is used:",
          file=sys.stderr)
    print(encode_invite(invite), flush=True)
    return 0


def show_invite(args: argparse.Namespace) -> int:
    print(describe_invite(describe_invite_code(read_code(args.code))))
    return 0


def cancel_invite(args: argparse.Namespace) -> int:

    store = SwarmStore()
    with secure.store_lock(store):
        store.cancel_invite(args.invite_id.strip())
    print(f"code {args.invite_id.strip()} no longer works")
    return 0


# ---- join ------------------------------------------------------------------------------------------------------------
def join(args: argparse.Namespace) -> int:
    code = read_code(args.code)
    invite = describe_invite_code(code)
    address = lifecycle.choose_listen_address(args.host)
    args.port = args.port or lifecycle.free_port(address.host)  # the inviter dials back the very port this PC serves on
    name = (args.name or socket.gethostname())[:64]
    print(f"Joining {invite.swarm_name!r} ({invite.model_id}) as {name!r} ...", file=sys.stderr, flush=True)
    joined = lifecycle.join_swarm(code, address.host, name, port=args.port)
    if joined.already_member:
        print(f"this PC is already a member of {joined.info.name!r}", file=sys.stderr)
    else:
        print(f"Joined swarm {joined.info.name!r} (id {joined.info.swarm_id}); {joined.members} member(s); "
              f"{secret_place(joined.secret_location)}.", flush=True)
    if args.no_serve:
        if not joined.already_member:
            print(f"Serve in it with: potluck serve --swarm {joined.info.name!r}")
        return 0
    return serve_as_member(args, joined.info.swarm_id)


# ---- members / revoke ------------------------------------------------------------------------------------------------
def members(args: argparse.Namespace) -> int:

    store = SwarmStore()
    info = pick_swarm(store, args.swarm)
    m = store.membership(info.swarm_id)
    own = _own_peer_id(info.swarm_id)
    listed = m.members if m is not None else ()
    if args.json:
        print_json({"swarm": info.name, "swarm_id": info.swarm_id, "members": [
            {"peer_id": x.peer_id, "name": x.name, "added_by": x.added_by, "added_at": x.added_at,
             "revoked": x.revoked, "revoked_at": x.revoked_at, "this_pc": x.peer_id == own} for x in listed]})
        return 0
    print(f"{info.name} (id {info.swarm_id}): {sum(not x.revoked for x in listed)} active member(s)")
    for x in listed:
        state = f"revoked {format_utc(x.revoked_at)}" if x.revoked else "active"
        print(f"  {x.name or '(no name)':<24} {x.peer_id}  {state:<28} since {format_utc(x.added_at)}"
              + ("  (this PC)" if x.peer_id == own else ""))
    return 0


def revoke(args: argparse.Namespace) -> int:

    store = SwarmStore()
    info = pick_swarm(store, args.swarm)
    own = _own_peer_id(info.swarm_id) or ""
    with secure.store_lock(store):
        current = store.membership(info.swarm_id)
        if current is None:
            raise CliError(f"this PC has no member list for {info.name!r}")
        target = ms.find_member(current, args.peer)
        if target.peer_id == own:
            raise CliError("that is this PC; to leave a swarm, stop its node and forget it")
        store.save_membership(info.swarm_id, ms.revoke_member(current, target.peer_id, own, time.time()))
    label = f"{target.name} ({target.peer_id[:12]}…)" if target.name else target.peer_id
    print(f"Revoked {label} from {info.name!r}.")
    if secure.running_node(info.swarm_id):
        print("This PC's node refuses it within seconds and tells the other members: within a minute no member "
              "accepts its requests or announcements, or routes through it.")
    elif lifecycle.tell_swarm(info.swarm_id, host=args.host, store=store):
        print("Told the swarm: within a minute no member accepts its requests or announcements, or routes through it.")
    else:
        print("No member could be reached now: the revocation spreads when this PC's node runs again "
              f"(`potluck serve --swarm {info.name!r}`). Until then, ask another member to revoke it too.")
    return 0
