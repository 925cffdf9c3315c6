"""Who belongs to a swarm: peer ids with names, who added them, and revocations. Pure functions over frozen data.

Rules:
- A member is identified by its libp2p peer id (base58). Adding an active member again is an error.
- Revocation is permanent for that peer id (`revoked`, `revoked_at`, `revoked_by`). It is never undone, which
  makes `merge` a simple union where revocation wins: two copies edited on different PCs always converge. A
  friend revoked by mistake joins again with a new code, which gives their PC a new identity.
- `version` counts changes, so a node keeps the newer of two lists it receives.
- A list travels signed: `sign_membership` adds an HMAC-SHA256 (key derived from the swarm secret) over its
  canonical JSON; `verify_membership` refuses any list whose bytes were changed. Only holders of the swarm
  secret can produce a valid list. A revoked member still knows the secret, so nodes also never accept a list
  that un-revokes someone they know as revoked (`merge` keeps revocations).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from potluck.core.errors import PotluckError

MEMBERSHIP_FORMAT = 1
MAX_MEMBERS = 1000
_PEER_ID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{20,100}")  # base58 libp2p peer id
_SWARM_ID = re.compile(r"[0-9a-f]{16}")


class MembershipError(PotluckError, ValueError):
    """A membership change or a received list is not acceptable; the message says why."""


@dataclass(frozen=True)
class Member:
    peer_id: str  # base58 libp2p peer id
    name: str  # friendly name chosen by its owner ("Ana's desktop")
    added_by: str  # peer id of the member who admitted it ("" for the creator)
    added_at: float  # unix seconds
    revoked: bool = False
    revoked_at: float | None = None  # unix seconds, when revoked
    revoked_by: str = ""  # peer id of the member who revoked it

    def __post_init__(self) -> None:
        _need(isinstance(self.peer_id, str) and _PEER_ID.fullmatch(self.peer_id) is not None,
              f"not a peer id: {self.peer_id!r}")
        _need(isinstance(self.name, str) and len(self.name) <= 64 and self.name.isprintable(),
              "member name: at most 64 printable characters")
        _need(isinstance(self.added_by, str) and (not self.added_by or _PEER_ID.fullmatch(self.added_by)),
              "added_by must be a peer id or empty")
        _need(_is_num(self.added_at) and self.added_at >= 0, "added_at must be unix seconds")
        _need(self.revoked == (self.revoked_at is not None), "revoked and revoked_at go together")
        _need(self.revoked_at is None or _is_num(self.revoked_at), "revoked_at must be unix seconds")


@dataclass(frozen=True)
class Membership:
    swarm_id: str
    members: tuple[Member, ...] = ()
    version: int = 0  # +1 on every change

    def __post_init__(self) -> None:
        _need(isinstance(self.swarm_id, str) and _SWARM_ID.fullmatch(self.swarm_id) is not None,
              "swarm id: 16 lowercase hex characters")
        _need(isinstance(self.version, int) and self.version >= 0, "version must be a non-negative integer")
        _need(len(self.members) <= MAX_MEMBERS, f"at most {MAX_MEMBERS} members")
        ids = [m.peer_id for m in self.members]
        _need(len(ids) == len(set(ids)), "a peer id appears twice")

    def get(self, peer_id: str) -> Member | None:
        return next((m for m in self.members if m.peer_id == peer_id), None)

    @property
    def active(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.revoked)


def new_membership(swarm_id: str, creator_peer_id: str, creator_name: str, now: float) -> Membership:
    """The list of a new swarm: just its creator."""
    return Membership(swarm_id, (Member(creator_peer_id, creator_name, "", now),), 1)


def add_member(m: Membership, peer_id: str, name: str, added_by: str, now: float) -> Membership:
    """Admit `peer_id`. Raises MembershipError if already a member, revoked, or `added_by` is not active."""
    existing = m.get(peer_id)
    if existing is not None and existing.revoked:
        raise MembershipError(f"{_label(existing)} was revoked; revoked peers cannot rejoin with the same identity")
    if existing is not None:
        raise MembershipError(f"{_label(existing)} is already a member")
    if added_by and not is_active_member(m, added_by):
        raise MembershipError(f"{added_by} is not an active member and cannot admit anyone")
    return replace(m, members=m.members + (Member(peer_id, name, added_by, now),), version=m.version + 1)


def revoke_member(m: Membership, peer_id: str, revoked_by: str, now: float) -> Membership:
    """Revoke `peer_id` for good. Raises MembershipError if unknown or already revoked."""
    target = m.get(peer_id)
    if target is None:
        raise MembershipError(f"{peer_id} is not a member of this swarm")
    if target.revoked:
        raise MembershipError(f"{_label(target)} was already revoked")
    revoked = replace(target, revoked=True, revoked_at=now, revoked_by=revoked_by)
    return replace(m, members=tuple(revoked if x is target else x for x in m.members), version=m.version + 1)


def is_active_member(m: Membership | None, peer_id: str) -> bool:
    """True if `peer_id` is listed and not revoked. False for None (no list known: refuse everyone)."""
    if m is None:
        return False
    member = m.get(peer_id)
    return member is not None and not member.revoked


def find_member(m: Membership, query: str) -> Member:
    """Resolve what a user typed (`potluck revoke ...`): a full peer id, a unique peer-id prefix (>= 6
    characters) or a unique name (case-insensitive). Raises MembershipError naming the candidates."""
    query = query.strip()
    exact = m.get(query)
    if exact is not None:
        return exact
    by_name = [x for x in m.members if x.name.casefold() == query.casefold()]
    by_prefix = [x for x in m.members if len(query) >= 6 and x.peer_id.startswith(query)]
    matches = by_name or by_prefix
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MembershipError(f"no member matches {query!r}; `potluck members` lists them")
    raise MembershipError(f"{query!r} matches several members: " + ", ".join(_label(x) for x in matches))


def merge(a: Membership, b: Membership) -> Membership:
    """Union of two copies of the same swarm's list; revocation wins; earliest admission kept."""
    _need(a.swarm_id == b.swarm_id, "cannot merge lists of different swarms")
    by_id: dict[str, Member] = {}
    for x in a.members + b.members:
        y = by_id.get(x.peer_id)
        if y is None:
            by_id[x.peer_id] = x
            continue
        first = x if (x.added_at, x.added_by) < (y.added_at, y.added_by) else y
        revs = [r for r in (x, y) if r.revoked]
        if revs:
            rev = min(revs, key=lambda r: (r.revoked_at, r.revoked_by))
            first = replace(first, revoked=True, revoked_at=rev.revoked_at, revoked_by=rev.revoked_by)
        by_id[x.peer_id] = first
    members = tuple(sorted(by_id.values(), key=_order))
    unchanged = members in (tuple(sorted(a.members, key=_order)), tuple(sorted(b.members, key=_order)))
    version = max(a.version, b.version) + (0 if unchanged else 1)
    return Membership(a.swarm_id, members, version)


def to_wire(m: Membership) -> dict[str, Any]:
    return {
        "format": MEMBERSHIP_FORMAT,
        "swarm_id": m.swarm_id,
        "version": m.version,
        "members": [
            {"peer_id": x.peer_id, "name": x.name, "added_by": x.added_by, "added_at": x.added_at,
             "revoked_at": x.revoked_at, "revoked_by": x.revoked_by}
            for x in m.members
        ],
    }


def from_wire(wire: Any) -> Membership:
    """Validate an unsigned list (e.g. after verify_membership). Unknown fields are ignored."""
    try:
        _need(isinstance(wire, Mapping), "membership must be a mapping")
        _need(wire.get("format") == MEMBERSHIP_FORMAT, f"unsupported membership format {wire.get('format')!r}")
        members = tuple(
            Member(x["peer_id"], x.get("name", ""), x.get("added_by", ""), x["added_at"],
                   x.get("revoked_at") is not None, x.get("revoked_at"), x.get("revoked_by", ""))
            for x in _list(wire.get("members"))
        )
        return Membership(wire["swarm_id"], members, wire["version"])
    except (KeyError, TypeError, AttributeError) as e:
        raise MembershipError(f"malformed membership list ({type(e).__name__}: {e})") from None


def subkey(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose derived from the swarm secret (HMAC-SHA256 as a KDF), so that a value signed for
    one purpose (a membership list) is never valid for another (a DHT access token)."""
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise MembershipError("the swarm secret must be at least 16 bytes")
    return hmac.new(secret, b"potluck/v1/" + purpose.encode(), hashlib.sha256).digest()


def sign_membership(m: Membership, secret: bytes) -> dict[str, Any]:
    body = to_wire(m)
    return {"membership": body, "hmac": _mac(body, secret)}


def verify_membership(signed: Any, secret: bytes, *, swarm_id: str | None = None) -> Membership:
    """The list inside `signed`, if its HMAC is right (and it belongs to `swarm_id`, when given)."""
    if not isinstance(signed, Mapping) or not isinstance(signed.get("hmac"), str) or "membership" not in signed:
        raise MembershipError("not a signed membership list")
    if not hmac.compare_digest(_mac(signed["membership"], secret), signed["hmac"]):
        raise MembershipError("the membership list was changed or signed with another swarm's secret")
    m = from_wire(signed["membership"])
    if swarm_id is not None and m.swarm_id != swarm_id:
        raise MembershipError(f"this membership list is for swarm {m.swarm_id}, not {swarm_id}")
    return m


def _mac(body: Any, secret: bytes) -> str:
    try:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError):
        raise MembershipError("membership list is not plain JSON data") from None
    return hmac.new(subkey(secret, "membership"), canonical.encode(), hashlib.sha256).hexdigest()


def _order(x: Member) -> tuple[float, str]:
    return x.added_at, x.peer_id


def _list(x: Any) -> Iterable[Mapping[str, Any]]:
    _need(isinstance(x, list) and all(isinstance(i, Mapping) for i in x), "members must be a list of mappings")
    return x


def _label(x: Member) -> str:
    return f"{x.name} ({x.peer_id[:12]}…)" if x.name else x.peer_id


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and x not in (float("inf"), -float("inf"))


def _need(ok: Any, message: str) -> None:
    if not ok:
        raise MembershipError(message)
