"""The private-swarm sub-commands of `potluck` (parsers and handlers); core/cli.py registers them.

    potluck swarm create --name N --model M [--revision R]
    potluck swarms
    potluck serve --swarm NAME [--host IP] ...            (serve in a private swarm: core/swarm_serve.py)
    potluck invite create [--swarm NAME] [--expires 7d] [--uses N]
    potluck invite show CODE | -
    potluck invite cancel INVITE_ID
    potluck join CODE | - [--name NAME] [--no-serve] [serve options]
    potluck members [--swarm NAME] [--json]
    potluck revoke PEER [--swarm NAME]

Secrets never appear on a command line or in a log: the swarm secret goes to the keyring or a private file, and
invite codes (a one-time capability) can be read from standard input with `-`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time

from potluck.core.cli import CliError, print_json
from potluck.core.swarm_serve import DEFAULT_MEMBERSHIP_PERIOD_SECONDS

_SERVE_HELP_SWARM = ("serve in this private swarm (a name or id from `potluck swarms`): only its members can reach "
                     "this server; listens on this PC's Tailscale address unless --host is given")
_CODE_HELP = ("the invite code, or - to read it from standard input. Reading it from stdin is safer: a code on the "
              "command line can be seen by other programs on this PC and stays in your shell history")


# ---- parsers --------------------------------------------------------------------------------------------------------
def add_swarm_commands(sub: argparse._SubParsersAction) -> None:
    """Register the private-swarm commands, and `--swarm` on `serve`, with the CLI's sub-parsers."""
    serve = sub.choices.get("serve")
    if serve is not None:
        serve.add_argument("--swarm", metavar="NAME", help=_SERVE_HELP_SWARM)
        serve.add_argument("--membership-period", type=_seconds, default=DEFAULT_MEMBERSHIP_PERIOD_SECONDS,
                           metavar="SECONDS", help="with --swarm: how often this node shares and re-reads the member "
                           "list (a revocation spreads in about two periods)")

    p = sub.add_parser("swarm", help="create a private swarm")
    swarm_sub = p.add_subparsers(dest="swarm_command", metavar="ACTION", required=True)
    c = swarm_sub.add_parser("create", help="a new private swarm with this PC as its first member")
    c.add_argument("--name", required=True, help="what your friends will see, e.g. 'Friday club'")
    c.add_argument("--model", required=True, help="Hugging Face model id (or a local model folder)")
    c.add_argument("--revision", default="", help="model commit or branch (default: the repo's default branch)")
    c.add_argument("--member-name", default=None, help="how this PC appears in the member list (default: host name)")

    sub.add_parser("swarms", help="the private swarms this PC knows")

    p = sub.add_parser("invite", help="make or inspect invite codes")
    invite_sub = p.add_subparsers(dest="invite_command", metavar="ACTION", required=True)
    c = invite_sub.add_parser("create", help="a code that lets one friend join (needs this swarm's node running)")
    c.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    c.add_argument("--expires", default="7d", help="how long the code works: 30m, 12h, 7d, 2w (default 7d)")
    c.add_argument("--uses", type=int, default=1, help="how many joins it allows (default 1; 0 = until it expires)")
    c.add_argument("--bootstrap", nargs="+", metavar="MADDR", help="join through these addresses instead of this "
                   "PC's running node")
    c = invite_sub.add_parser("show", help="decode a code without joining")
    c.add_argument("code", nargs="?", default="-", metavar="CODE", help=_CODE_HELP)
    c = invite_sub.add_parser("cancel", help="stop a code made on this PC from working")
    c.add_argument("invite_id", help="the code's id, as `potluck invite show` prints it")

    p = sub.add_parser("join", help="join a private swarm with an invite code, then serve in it",
                       description="Join a private swarm with an invite code. " + _CODE_HELP + ".")
    p.add_argument("code", nargs="?", default="-", metavar="CODE", help=_CODE_HELP)
    p.add_argument("--name", default=None, help="how your friends see this PC (default: its host name)")
    p.add_argument("--no-serve", action="store_true", help="only join; serve later with `potluck serve --swarm`")
    _add_serve_options(p)

    p = sub.add_parser("members", help="who belongs to a private swarm")
    p.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("revoke", help="remove a member from a private swarm, for good")
    p.add_argument("peer", metavar="PEER", help="member name, peer id, or a unique start of one (6+ characters)")
    p.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    p.add_argument("--host", default=None, help="address to tell the swarm from when no node runs here "
                   "(default: this PC's Tailscale address)")


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    from potluck.core.cli import _block_range, _positive_int

    p.add_argument("--model", default=None, help="a local folder with the swarm's model (default: the swarm's model id)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--blocks", type=_block_range, help="host exactly these blocks, e.g. 0:8")
    which.add_argument("--num-blocks", type=_positive_int, help="host this many blocks (default: as many as fit)")
    p.add_argument("--host", default=None, help="address to listen on (default: this PC's Tailscale address; "
                   "127.0.0.1 to try Potluck on this PC only; 0.0.0.0 listens everywhere)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: the one used last time)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-tokens", type=_positive_int, default=8192)
    p.add_argument("--max-session-tokens", type=_positive_int, default=4096)
    p.add_argument("--revision", default=None)
    p.add_argument("--membership-period", type=_seconds, default=DEFAULT_MEMBERSHIP_PERIOD_SECONDS, metavar="SECONDS",
                   help="how often this node shares and re-reads the member list")


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.1 and 3600 seconds")
    return value


# ---- helpers --------------------------------------------------------------------------------------------------------
_USER_ERRORS = {"potluck.core.swarm.invite": "InviteError", "potluck.core.swarm.join": "JoinError", "potluck.core.swarm.store": "StoreError",
                "potluck.core.swarm.membership": "MembershipError", "potluck.core.swarm.tailscale": "TailnetError",
                "potluck.core.secrets": "SecretStoreError"}


def _user_errors(fn):
    """Turn the swarm modules' user-facing errors into CliError (one line, exit code 2). Looks the classes up
    among modules already loaded: importing them all would pull in torch and slow every command."""
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except Exception as e:
            kinds = tuple(getattr(sys.modules[m], c) for m, c in _USER_ERRORS.items() if m in sys.modules)
            if isinstance(e, kinds):
                raise CliError(str(e)) from None
            raise

    wrapped.__name__ = fn.__name__
    return wrapped


def _read_code(text: str | None) -> str:
    if text not in (None, "-"):
        return text
    if sys.stdin.isatty():
        print("Paste the invite code and press Enter:", file=sys.stderr)
        return sys.stdin.readline()
    return sys.stdin.read(8192)


def _pick_swarm(store, swarm: str | None):
    if swarm:
        return store.get(swarm)
    swarms = store.list_swarms()
    if len(swarms) == 1:
        return swarms[0]
    if not swarms:
        raise CliError("this PC is in no private swarm yet: `potluck swarm create` or `potluck join`")
    raise CliError("this PC knows several swarms; say which with --swarm: " + ", ".join(s.name for s in swarms))


def _label(member) -> str:
    return f"{member.name} ({member.peer_id[:12]}…)" if member.name else member.peer_id


def _secret_place(location) -> str:
    if location.kind == "keyring":
        return "the swarm secret is in this PC's keyring"
    return f"the swarm secret is in {location.path}, readable only by you (no usable keyring on this PC)"


# ---- swarm create / swarms ------------------------------------------------------------------------------------------
@_user_errors
def cmd_swarm(args: argparse.Namespace) -> int:
    from potluck.core.swarm import secure
    from potluck.core.swarm.store import SwarmStore

    store = SwarmStore()
    pending = secure.identities_dir() / f".new-{time.time_ns()}.key"  # renamed once the swarm has an id
    peer_id = secure.create_identity(pending)
    try:
        with secure.store_lock(store):
            info, location = store.create_swarm(args.name, args.model, args.revision, creator_peer_id=peer_id,
                                                creator_name=(args.member_name or socket.gethostname())[:64])
        pending.replace(secure.identity_path(info.swarm_id))
    finally:
        pending.unlink(missing_ok=True)
    print(f"Created swarm {info.name!r} (id {info.swarm_id}) for {info.model_id}"
          + (f" @ {info.model_revision}" if info.model_revision else ""))
    print(f"This PC is its first member: {peer_id}")
    print(f"Secret: {_secret_place(location)}.")
    print(f"Next: `potluck serve --swarm {info.name!r}`, then `potluck invite create --swarm {info.name!r}` for each friend.")
    return 0


@_user_errors
def cmd_swarms(args: argparse.Namespace) -> int:
    from potluck.core.swarm.secure import running_node
    from potluck.core.swarm.store import SwarmStore

    store = SwarmStore()
    swarms = store.list_swarms()
    if not swarms:
        print("this PC is in no private swarm yet: `potluck swarm create` or `potluck join`")
    for info in swarms:
        m = store.membership(info.swarm_id)
        members = len(m.active) if m is not None else 0
        state = "node running" if running_node(info.swarm_id) else "node stopped"
        print(f"{info.name}  (id {info.swarm_id})  {info.model_id}  {members} member(s)  {state}")
    return 0


# ---- invites ---------------------------------------------------------------------------------------------------------
@_user_errors
def cmd_invite(args: argparse.Namespace) -> int:
    return {"create": _invite_create, "show": _invite_show, "cancel": _invite_cancel}[args.invite_command](args)


def _invite_create(args: argparse.Namespace) -> int:
    from potluck.core.swarm import secure
    from potluck.core.swarm.invite import describe_invite, encode_invite
    from potluck.core.swarm.store import SwarmStore, parse_duration

    store = SwarmStore()
    info = _pick_swarm(store, args.swarm)
    if not 0 <= args.uses <= 65535:
        raise CliError("--uses must be between 0 (until it expires) and 65535")
    bootstrap = args.bootstrap
    if not bootstrap:
        running = secure.running_node(info.swarm_id)
        if running is None:
            raise CliError(f"start this PC's node of {info.name!r} first (`potluck serve --swarm {info.name!r}`): "
                           "the code tells your friend's PC where to find it, and this node admits them")
        bootstrap = _dialable(running["maddrs"])
    seconds = parse_duration(args.expires)
    with secure.store_lock(store):
        invite = store.create_invite(info.swarm_id, tuple(bootstrap[:8]), expires_in_seconds=seconds,
                                     max_uses=args.uses or None)
    print(describe_invite(invite), file=sys.stderr)
    print("Send this code to your friend over a chat you trust; it works like a password until it is used:",
          file=sys.stderr)
    print(encode_invite(invite), flush=True)
    return 0


def _dialable(maddrs: list[str]) -> list[str]:
    """The addresses worth putting in a code: tailnet ones, else any non-loopback, else loopback (tests, demos)."""
    from potluck.core.swarm.tailscale import is_tailnet_ipv4

    def host(m: str) -> str:
        return m.split("/")[2] if m.count("/") >= 3 else ""

    tailnet = [m for m in maddrs if is_tailnet_ipv4(host(m))]
    if tailnet:
        return tailnet
    other = [m for m in maddrs if not host(m).startswith("127.") and host(m) != "::1"]
    return other or list(maddrs)


def _invite_show(args: argparse.Namespace) -> int:
    from potluck.core.swarm.invite import decode_invite, describe_invite

    invite = decode_invite(_read_code(args.code), allow_expired=True)
    print(describe_invite(invite))
    return 0


def _invite_cancel(args: argparse.Namespace) -> int:
    from potluck.core.swarm import secure
    from potluck.core.swarm.store import SwarmStore

    store = SwarmStore()
    with secure.store_lock(store):
        store.cancel_invite(args.invite_id.strip())
    print(f"code {args.invite_id.strip()} no longer works")
    return 0


# ---- join --------------------------------------------------------------------------------------------------------------
@_user_errors
def cmd_join(args: argparse.Namespace) -> int:
    from potluck.core.swarm import secure
    from potluck.core.swarm.invite import decode_invite
    from potluck.core.swarm.join import request_join
    from potluck.core.swarm.store import SwarmNotFound, SwarmStore

    invite = decode_invite(_read_code(args.code))
    store = SwarmStore()
    try:
        secure.open_swarm(invite.swarm_id, store)
        print(f"this PC is already a member of {invite.swarm_name!r}", file=sys.stderr)
        return 0 if args.no_serve else _serve(args, invite.swarm_id)
    except (SwarmNotFound, secure.SwarmAccessError):
        pass  # not yet a member (or no longer): join with a fresh identity
    if secure.running_node(invite.swarm_id):
        raise CliError(f"a node of {invite.swarm_name!r} is running on this PC; stop it before joining again")
    from potluck.core.swarm_serve import free_port, resolve_host

    host, _ = resolve_host(args.host)
    args.port = args.port or free_port(host)  # the inviter dials back the very port this PC will serve on
    name = (args.name or socket.gethostname())[:64]
    path = secure.identity_path(invite.swarm_id)
    peer_id = secure.create_identity(path)
    print(f"Joining {invite.swarm_name!r} ({invite.model_id}) as {name!r}, peer id {peer_id} ...", file=sys.stderr,
          flush=True)
    welcome, membership = asyncio.run(request_join(invite, path, host, name, port=args.port))
    with secure.store_lock(store):
        info, location = store.add_joined_swarm(invite, welcome.secret, membership=membership)
        peers = list(dict.fromkeys(welcome.bootstrap + invite.bootstrap))[:8]
        store.set_bootstrap(info.swarm_id, tuple(peers))
    print(f"Joined swarm {info.name!r} (id {info.swarm_id}); {len(membership.active)} member(s); "
          f"{_secret_place(location)}.", flush=True)
    if args.no_serve:
        print(f"Serve in it with: potluck serve --swarm {info.name!r}")
        return 0
    return _serve(args, info.swarm_id)


def _serve(args: argparse.Namespace, swarm_id: str) -> int:
    from potluck.core.swarm_serve import serve_in_swarm

    return serve_in_swarm(argparse.Namespace(**{**vars(args), "swarm": swarm_id}))


# ---- members / revoke ----------------------------------------------------------------------------------------------
@_user_errors
def cmd_members(args: argparse.Namespace) -> int:
    from potluck.core.swarm import secure
    from potluck.core.swarm.invite import format_utc
    from potluck.core.swarm.store import SwarmStore

    store = SwarmStore()
    info = _pick_swarm(store, args.swarm)
    m = store.membership(info.swarm_id)
    own = _own_peer_id(info.swarm_id, secure)
    members = m.members if m is not None else ()
    if args.json:
        print_json({"swarm": info.name, "swarm_id": info.swarm_id, "members": [
            {"peer_id": x.peer_id, "name": x.name, "added_by": x.added_by, "added_at": x.added_at,
             "revoked": x.revoked, "revoked_at": x.revoked_at, "this_pc": x.peer_id == own} for x in members]})
        return 0
    print(f"{info.name} (id {info.swarm_id}): {sum(not x.revoked for x in members)} active member(s)")
    for x in members:
        state = f"revoked {format_utc(x.revoked_at)}" if x.revoked else "active"
        print(f"  {x.name or '(no name)':<24} {x.peer_id}  {state:<28} since {format_utc(x.added_at)}"
              + ("  (this PC)" if x.peer_id == own else ""))
    return 0


def _own_peer_id(swarm_id: str, secure) -> str | None:
    path = secure.identity_path(swarm_id)
    return secure.peer_id_of_identity(path) if path.exists() else None


@_user_errors
def cmd_revoke(args: argparse.Namespace) -> int:
    from potluck.core.swarm import membership as ms
    from potluck.core.swarm import secure
    from potluck.core.swarm.store import SwarmStore

    store = SwarmStore()
    info = _pick_swarm(store, args.swarm)
    own = _own_peer_id(info.swarm_id, secure) or ""
    with secure.store_lock(store):
        current = store.membership(info.swarm_id)
        if current is None:
            raise CliError(f"this PC has no member list for {info.name!r}")
        target = ms.find_member(current, args.peer)
        if target.peer_id == own:
            raise CliError("that is this PC; to leave a swarm, stop its node and forget it")
        store.save_membership(info.swarm_id, ms.revoke_member(current, target.peer_id, own, time.time()))
    print(f"Revoked {_label(target)} from {info.name!r}.")
    if secure.running_node(info.swarm_id):
        print("This PC's node refuses it within seconds and tells the other members: within a minute no member "
              "accepts its requests or announcements, or routes through it.")
        return 0
    from potluck.core.swarm_serve import tell_swarm

    told = tell_swarm(info, store, args.host)
    if told:
        print("Told the swarm: within a minute no member accepts its requests or announcements, or routes through it.")
    else:
        print("No member could be reached now: the revocation spreads when this PC's node runs again "
              f"(`potluck serve --swarm {info.name!r}`). Until then, ask another member to revoke it too.")
    return 0
