"""The private-swarm commands (core/swarm/lifecycle.py does the work):

    potluck swarm create --name N --model M [--revision R]
    potluck swarms
    potluck invite create [--swarm NAME] [--expires 7d] [--uses N] [--this-pc-only] | show CODE | - | cancel ID
    potluck join CODE | - [--name NAME] [--no-serve] [serve options]
    potluck members ... | revoke PEER          (core/cli/members.py: roles, promote/demote, who may invite)

Secrets never appear on a command line or in a log: the swarm secret goes to the keyring or a private file, and
invite codes (a one-time capability) can be read from standard input with `-`.
"""

from __future__ import annotations

import argparse
import socket
import sys

from potluck.core.cli import members as members_cli
from potluck.core.cli.common import CliError, seconds
from potluck.core.cli.members import pick_swarm
from potluck.core.cli.serving import (
    DEFAULT_MEMBERSHIP_PERIOD_SECONDS,
    PRECISIONS,
    add_block_options,
    add_compute_options,
    serve_as_member,
)
from potluck.core.model.catalog import fit_line, size_of
from potluck.core.server.memory import available_ram_bytes
from potluck.core.swarm import lifecycle, secure
from potluck.core.swarm import membership as ms
from potluck.core.swarm.invite import describe_invite, encode_invite
from potluck.core.swarm.lifecycle import describe_invite_code
from potluck.core.swarm.secure import running_node
from potluck.core.swarm.store import SwarmStore, parse_duration

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
    c.add_argument("--this-pc-only", action="store_true", help="allow a code that names only 127.0.0.1 (a second "
                   "Potluck on this PC); without Tailscale, codes are refused otherwise, since no friend could use them")
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

    members_cli.register(sub)


# ---- helpers --------------------------------------------------------------------------------------------------------
def read_code(text: str | None) -> str:
    if text not in (None, "-"):
        return text
    if sys.stdin.isatty():
        print("Paste the invite code and press Enter:", file=sys.stderr)
        return sys.stdin.readline()
    return sys.stdin.read(8192)


def secret_place(location) -> str:
    if location.kind == "keyring":
        return "the swarm secret is in this PC's keyring"
    return f"the swarm secret is in {location.path}, readable only by you (no usable keyring on this PC)"


def model_fit(model: str, quant: str) -> str:
    """The model's size at the swarm's precision and how many PCs like this one hold it (only its config is read;
    an unsupported architecture is refused with the supported ones)."""

    return fit_line(size_of(model), quant, available_ram_bytes())


def _own_peer_id(swarm_id: str) -> str | None:

    path = secure.identity_path(swarm_id)
    return secure.peer_id_of_identity(path) if path.exists() else None


# ---- swarm create / swarms ------------------------------------------------------------------------------------------
def create_swarm(args: argparse.Namespace) -> int:
    fits = model_fit(args.model, args.quant)  # refuses an unsupported architecture before anything is created
    created = lifecycle.create_swarm(args.name, args.model, args.revision, member_name=args.member_name or "",
                                     quant=args.quant)
    info = created.info
    print(f"Model: {fits}.")
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
        try:
            bootstrap = lifecycle.invite_addresses(running["maddrs"], this_pc_only=args.this_pc_only)
        except lifecycle.LifecycleError as e:
            raise CliError(f"{e} To make a code for this PC only, add --this-pc-only.") from None
    own = _own_peer_id(info.swarm_id) or ""
    with secure.store_lock(store):
        current = store.membership(info.swarm_id)
        refusal = ms.may_invite(current, own) if current is not None else "this PC has no member list yet"
        if refusal:
            raise CliError(f"this PC cannot make invite codes for {info.name!r}: {refusal}")
        invite = store.create_invite(info.swarm_id, tuple(bootstrap[:8]), expires_in_seconds=parse_duration(args.expires),
                                     max_uses=args.uses or None, created_by=own)
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
