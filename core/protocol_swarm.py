"""The swarm page's part of the GUI ↔ node protocol: the fields of the commands that manage this PC's private swarm
(invite, revoke, leave, join, switch) and of the events that answer them. core/protocol.py gives each one its
kind (a subclass per message), so these are the same frozen, checked, typed-JSON records as the rest.

Commands (GUI → node), each with a `request_id` the answer repeats:
  swarm_refresh                 send a `swarm` event now
  invite_create                 a code for a friend; `this_pc_only` allows a code that names only 127.0.0.1
  invite_cancel INVITE_ID       a code made here stops working
  revoke PEER_ID                remove a member for good
  leave                         stop serving, forget the swarm (its secret and this PC's identity in it)
  join CODE [model]             leave the current swarm's network and join another with an invite code
  switch SWARM_ID [model]       serve in another swarm this PC already belongs to
Events (node → GUI):
  swarm                         the current swarm: members (role, state, blocks, last seen), invites, known swarms
  invite                        the code made for an invite_create, with its expiry and uses
  swarm_result                  how a command ended (ok, or the reason in plain words)

Standard library only (the GUI imports it). Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from potluck.core import typed_json

MIN_INVITE_SECONDS = 60
MAX_INVITE_SECONDS = 365 * 24 * 3600
DEFAULT_INVITE_SECONDS = 7 * 24 * 3600
MAX_INVITE_USES = 65_535
MAX_CODE_CHARS = 4096  # a pasted code with spaces and line breaks; real codes are about 300 characters
ROLES = ("owner", "admin", "member")  # who may do what is the swarm's business (core/swarm/membership.py)
SWARM_OPS = ("swarm_refresh", "invite_create", "invite_cancel", "revoke", "leave", "join", "switch")
_SWARM_ID = re.compile(r"[0-9a-f]{16}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise typed_json.TypedJsonError(message)  # core.protocol.decode turns it into a ProtocolError


def _check_request(request_id: str) -> None:
    _check(0 < len(request_id) <= 128, "request_id must be 1 to 128 characters")


def _check_swarm_id(swarm_id: str, *, empty_ok: bool) -> None:
    _check((empty_ok and swarm_id == "") or _SWARM_ID.fullmatch(swarm_id) is not None,
           f"swarm_id must be 16 lowercase hex characters, got {swarm_id!r}")


# ---------------------------------------------------------------------------------------------- nested records


@dataclass(frozen=True)
class SwarmMember:
    """One PC on the member list, with what the swarm's records say about it now."""

    peer_id: str
    name: str
    role: str = "member"  # owner, admin, member (a newer node may send others; shown as they come)
    active: bool = True  # False once revoked (or left)
    online: bool = False  # announced in the swarm right now
    state: str = "offline"  # the server's state: joining, online, draining, offline
    start_block: int = 0  # hosted blocks [start_block, end_block)
    end_block: int = 0
    last_seen: float = 0.0  # unix seconds this node last saw it online; 0 = not since this node started
    this_pc: bool = False

    def __post_init__(self) -> None:
        _check(0 <= self.start_block <= self.end_block, f"bad block range {self.start_block}:{self.end_block}")
        _check(self.last_seen >= 0, "last_seen must be >= 0")


@dataclass(frozen=True)
class InviteInfo:
    """A code made on this PC (the code itself is shown once, in the `invite` event; this is what is left)."""

    invite_id: str  # public name of the code (12 hex characters)
    expires_at: int  # unix seconds
    max_uses: int = 1  # 0 = any number of joins until it expires
    uses_left: int = 1  # meaningless when max_uses is 0
    cancelled: bool = False


@dataclass(frozen=True)
class KnownSwarm:
    swarm_id: str
    name: str
    model_id: str
    created_here: bool = False
    this_pc_removed: bool = False  # this PC was revoked there: only a new code brings it back


# ---------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class SwarmRefreshFields:
    request_id: str = "refresh"


@dataclass(frozen=True)
class InviteCreateFields:
    request_id: str
    expires_seconds: int = DEFAULT_INVITE_SECONDS
    max_uses: int = 1  # 0 = until it expires
    this_pc_only: bool = False  # the owner chose a code that works on this PC only (127.0.0.1 is allowed)

    def __post_init__(self) -> None:
        _check_request(self.request_id)
        _check(MIN_INVITE_SECONDS <= self.expires_seconds <= MAX_INVITE_SECONDS,
               "expires_seconds must be between 1 minute and 365 days")
        _check(0 <= self.max_uses <= MAX_INVITE_USES, f"max_uses must be in 0..{MAX_INVITE_USES}")


@dataclass(frozen=True)
class InviteCancelFields:
    request_id: str
    invite_id: str

    def __post_init__(self) -> None:
        _check_request(self.request_id)
        _check(re.fullmatch(r"[0-9a-f]{12}", self.invite_id) is not None, "invite_id must be 12 hex characters")


@dataclass(frozen=True)
class RevokeFields:
    request_id: str
    peer_id: str

    def __post_init__(self) -> None:
        _check_request(self.request_id)
        _check(0 < len(self.peer_id) <= 128, "peer_id must be 1 to 128 characters")


@dataclass(frozen=True)
class LeaveFields:
    request_id: str
    swarm_id: str = ""  # the swarm to leave; "" = the current one

    def __post_init__(self) -> None:
        _check_request(self.request_id)
        _check_swarm_id(self.swarm_id, empty_ok=True)


@dataclass(frozen=True)
class JoinFields:
    request_id: str
    code: str = field(repr=False)  # the invite code, a secret: it travels on the node's stdin, never in a log
    model: str = ""  # this PC's own copy of the swarm's model (hub id, folder or .gguf); "" = the swarm's
    pc_name: str = ""  # how friends see this PC; "" = as before

    def __post_init__(self) -> None:
        _check_request(self.request_id)
        _check(0 < len(self.code) <= MAX_CODE_CHARS, f"code must be 1 to {MAX_CODE_CHARS} characters")
        _check(len(self.model) <= 4096 and len(self.pc_name) <= 64, "model or pc_name too long")


@dataclass(frozen=True)
class SwitchFields:
    request_id: str
    swarm_id: str
    model: str = ""  # this PC's own copy of that swarm's model; "" = the swarm's

    def __post_init__(self) -> None:
        _check_request(self.request_id)
        _check_swarm_id(self.swarm_id, empty_ok=False)
        _check(len(self.model) <= 4096, "model too long")


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class SwarmViewFields:
    """The current swarm as this node sees it. `swarm_id` "" means this PC is in no swarm (left, or not joined)."""

    swarm_id: str = ""
    name: str = ""
    model_id: str = ""  # what the swarm runs: a hub id, or a path on the PC that created it
    model_uid: str = ""  # the model's identity (name@revision) the swarm recorded; "" when it recorded none
    model_here: str = ""  # what this PC serves: its own copy, or the swarm's model
    model_is_path: bool = False  # model_id is a file or folder on the creator's PC
    model_found: bool = True  # this PC can open what it would serve (a hub id counts as found)
    created_here: bool = False
    peer_id: str = ""  # this PC's identity in the swarm
    this_pc_removed: bool = False  # this PC was revoked: it needs a new code
    listen_host: str = ""  # where this node listens; a 127.x address means friends cannot reach it
    secret_where: str = ""  # where the swarm secret is kept, in words ("the system keyring", "a private file …")
    request_id: str = ""  # the swarm_refresh this answers ("" when the node sent it on its own)
    members: tuple[SwarmMember, ...] = ()
    invites: tuple[InviteInfo, ...] = ()
    known: tuple[KnownSwarm, ...] = ()

    def __post_init__(self) -> None:
        _check_swarm_id(self.swarm_id, empty_ok=True)


@dataclass(frozen=True)
class InviteMadeFields:
    request_id: str
    code: str  # the invite code, to show large and copy
    invite_id: str
    swarm_name: str
    expires_at: int  # unix seconds
    max_uses: int = 1  # 0 = any number of joins until it expires
    bootstrap: tuple[str, ...] = ()  # the addresses the code names
    this_pc_only: bool = False  # every address is a loopback one: it works on this PC only


@dataclass(frozen=True)
class SwarmResultFields:
    request_id: str
    op: str  # the command's kind: invite_cancel, revoke, leave, join, switch, invite_create
    ok: bool
    message: str = ""  # plain words: what happened, or why not and what to do
    swarm_id: str = ""  # the swarm this PC is in afterwards ("" = none)
