"""Who belongs to a private swarm, and who may change that (core/swarm/membership.py has the rules):

    potluck members [--swarm NAME] [--json]                   everyone, with roles (owner, admin, member)
    potluck members promote NAME | demote NAME [--swarm NAME] the owner makes a member an admin, or back
    potluck members invites members|admins [--swarm NAME]     the owner decides who may make invite codes
    potluck revoke PEER [--swarm NAME] [--host IP]            the owner or an admin removes a member for good

Each change is signed with this PC's identity in the swarm and refused here, in words, when this PC may not make
it (other PCs would drop it anyway). A running node spreads it within seconds; otherwise `revoke` tells the swarm
briefly itself, and the other changes spread when this PC's node runs again.
"""

from __future__ import annotations

import argparse
import time

from potluck.core.cli.common import CliError, print_json
from potluck.core.swarm import lifecycle, secure
from potluck.core.swarm import membership as ms
from potluck.core.swarm.invite import format_utc
from potluck.core.swarm.store import SwarmStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("members", help="who belongs to a private swarm; the owner promotes, demotes and decides "
                                       "who may invite")
    p.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=members)
    actions = p.add_subparsers(dest="members_command", metavar="ACTION")
    for action, words in (("promote", "make a member an admin (the owner only): admins revoke members and always "
                                      "may invite"), ("demote", "make an admin a plain member again (the owner only)")):
        c = actions.add_parser(action, help=words)
        c.add_argument("member", metavar="NAME", help="member name, peer id, or a unique start of one (6+ characters)")
        c.add_argument("--swarm", metavar="NAME", default=argparse.SUPPRESS, help="which swarm (default: the only one)")
        c.set_defaults(handler=change_role, role=ms.Role.ADMIN if action == "promote" else ms.Role.MEMBER)
    c = actions.add_parser("invites", help="who may make invite codes: every member, or only the owner and admins "
                                           "(the owner only)")
    c.add_argument("policy", choices=[p.value for p in ms.InvitePolicy])
    c.add_argument("--swarm", metavar="NAME", default=argparse.SUPPRESS, help="which swarm (default: the only one)")
    c.set_defaults(handler=change_invite_policy)

    p = sub.add_parser("revoke", help="remove a member from a private swarm, for good (the owner, or an admin)")
    p.add_argument("peer", metavar="PEER", help="member name, peer id, or a unique start of one (6+ characters)")
    p.add_argument("--swarm", metavar="NAME", help="which swarm (default: the only one)")
    p.add_argument("--host", default=None, help="address to tell the swarm from when no node runs here "
                   "(default: this PC's Tailscale address)")
    p.set_defaults(handler=revoke)


def pick_swarm(store: SwarmStore, swarm: str | None):
    if swarm:
        return store.get(swarm)
    swarms = store.list_swarms()
    if len(swarms) == 1:
        return swarms[0]
    if not swarms:
        raise CliError("this PC is in no private swarm yet: `potluck swarm create` or `potluck join`")
    raise CliError("this PC knows several swarms; say which with --swarm: " + ", ".join(s.name for s in swarms))


def members(args: argparse.Namespace) -> int:
    store = SwarmStore()
    info = pick_swarm(store, args.swarm)
    m = store.membership(info.swarm_id)
    own = lifecycle.own_peer_id(info.swarm_id)
    listed = m.members if m is not None else ()
    policy = m.invite_policy.value if m is not None else ms.InvitePolicy.MEMBERS.value
    if args.json:
        print_json({"swarm": info.name, "swarm_id": info.swarm_id, "invites": policy, "members": [
            {"peer_id": x.peer_id, "name": x.name, "role": x.role.value, "added_by": x.added_by,
             "added_at": x.added_at, "revoked": x.revoked, "revoked_at": x.revoked_at, "revoked_by": x.revoked_by,
             "this_pc": x.peer_id == own} for x in listed]})
        return 0
    who = "every member" if policy == ms.InvitePolicy.MEMBERS.value else "the owner and admins"
    print(f"{info.name} (id {info.swarm_id}): {sum(not x.revoked for x in listed)} active member(s); "
          f"{who} may invite")
    for x in listed:
        state = f"revoked {format_utc(x.revoked_at)}" if x.revoked else "active"
        print(f"  {x.name or '(no name)':<24} {x.role.value:<7} {x.peer_id}  {state:<28} since {format_utc(x.added_at)}"
              + ("  (this PC)" if x.peer_id == own else ""))
    return 0


def _change(args: argparse.Namespace, make) -> tuple:
    """Apply `make(current list, this PC's signer)` to the stored list under the store lock."""
    store = SwarmStore()
    info = pick_swarm(store, args.swarm)
    me = secure.load_signer(secure.identity_path(info.swarm_id))
    with secure.store_lock(store):
        current = store.membership(info.swarm_id)
        if current is None:
            raise CliError(f"this PC has no member list for {info.name!r}")
        if current.owner != me.peer_id:
            raise CliError(f"only the swarm's owner can do this (this PC is {current.role_of(me.peer_id) or 'no member'})")
        changed, said = make(current, me)
        store.save_membership(info.swarm_id, changed)
    return info, said


def change_role(args: argparse.Namespace) -> int:
    def make(current, me):
        target = ms.find_member(current, args.member)
        if target.role is args.role:
            raise CliError(f"{target.name or target.peer_id} is already {'an' if args.role is ms.Role.ADMIN else 'a'} "
                           f"{args.role.value}")
        return ms.set_role(current, target.peer_id, args.role, me, time.time()), target.name or target.peer_id

    info, name = _change(args, make)
    print(f"{name} is now {'an admin' if args.role is ms.Role.ADMIN else 'a member'} of {info.name!r}.")
    _spread_note(info)
    return 0


def change_invite_policy(args: argparse.Namespace) -> int:
    policy = ms.InvitePolicy(args.policy)
    info, _ = _change(args, lambda current, me: (ms.set_invite_policy(current, policy, me, time.time()), ""))
    who = "every member" if policy is ms.InvitePolicy.MEMBERS else "only the owner and admins"
    print(f"In {info.name!r}, {who} may make invite codes from now on.")
    _spread_note(info)
    return 0


def revoke(args: argparse.Namespace) -> int:
    store = SwarmStore()
    info = pick_swarm(store, args.swarm)
    try:
        target = lifecycle.revoke_member(info.swarm_id, args.peer, store=store)
    except lifecycle.LifecycleError as e:
        raise CliError(str(e)) from None
    label = f"{target.name} ({target.peer_id[:12]}…)" if target.name else target.peer_id
    print(f"Revoked {label} from {info.name!r}; the invite codes it made or used here no longer work.")
    if secure.running_node(info.swarm_id):
        print("This PC's node refuses it within seconds and tells the other members: within a minute no member "
              "accepts its requests or announcements, or routes through it. The owner's node then makes a new "
              "swarm secret and hands it to the members who remain.")
    elif lifecycle.tell_swarm(info.swarm_id, host=args.host, store=store):
        print("Told the swarm: within a minute no member accepts its requests or announcements, or routes through it.")
    else:
        print("No member could be reached now: the revocation spreads when this PC's node runs again "
              f"(`potluck serve --swarm {info.name!r}`). Until then, ask another member to revoke it too.")
    return 0


def _spread_note(info) -> None:
    if not secure.running_node(info.swarm_id):
        print(f"It reaches the other members when this PC's node runs (`potluck serve --swarm {info.name!r}`).")
