"""The member list's records (frozen data) and `resolve`, which turns a pile of signed statements into the list they
make. The rules in words are in core/swarm/membership.py, whose functions are the way to change a list.
"""

from __future__ import annotations

import enum
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from potluck.core.errors import PotluckError
from potluck.core.swarm.signing import Signer, peer_id_of_key, statement_bytes, verify

MAX_MEMBERS = 256  # entries, active and revoked, a list keeps
MAX_WIRE_MEMBERS = 2 * MAX_MEMBERS  # a received list with more entries is refused unread
MAX_ADMITTED_BY_MEMBER = 16  # unconfirmed admissions a plain member (not the owner or an admin) may make
_PEER_ID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{20,100}")  # base58 libp2p peer id
_SWARM_ID = re.compile(r"[0-9a-f]{16}")


class MembershipError(PotluckError, ValueError):
    """A membership change or a received list is not acceptable; the message says why."""


class Role(str, enum.Enum):
    OWNER = "owner"  # the creator: changes roles and settings, revokes anyone, countersigns
    ADMIN = "admin"  # revokes members, always may invite
    MEMBER = "member"  # may invite when the swarm's setting allows it

    def __str__(self) -> str:
        return self.value


class InvitePolicy(str, enum.Enum):
    MEMBERS = "members"  # every member may invite
    ADMINS = "admins"  # only the owner and admins

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Admission:
    by: str  # who admitted (signed); the owner for itself
    at: float
    name: str = ""  # the name asked for at the join
    invite: str = ""  # the invite id redeemed ("" for the owner, migrated entries)
    sig: str = ""
    confirm: str = ""  # the owner's countersignature


@dataclass(frozen=True)
class Profile:
    name: str
    at: float
    sig: str = ""  # by the member itself


@dataclass(frozen=True)
class RoleGrant:
    role: Role  # ADMIN or MEMBER
    at: float
    sig: str = ""  # by the owner


@dataclass(frozen=True)
class Revocation:
    by: str
    at: float
    sig: str = ""
    confirm: str = ""  # the owner's countersignature


@dataclass(frozen=True)
class Settings:
    invite: InvitePolicy
    at: float
    sig: str = ""  # by the owner


@dataclass(frozen=True)
class Member:
    peer_id: str
    admission: Admission
    key: str = ""  # base64 SPKI DER of its RSA key ("" until known); hashes to peer_id
    profile: Profile | None = None
    grant: RoleGrant | None = None
    revocation: Revocation | None = None
    role: Role = Role.MEMBER  # derived when the list is resolved; not on the wire

    @property
    def name(self) -> str:
        return self.profile.name if self.profile is not None else self.admission.name

    @property
    def added_by(self) -> str:
        return "" if self.admission.by == self.peer_id else self.admission.by

    @property
    def added_at(self) -> float:
        return self.admission.at

    @property
    def invite_id(self) -> str:
        return self.admission.invite

    @property
    def revoked(self) -> bool:
        return self.revocation is not None

    @property
    def revoked_at(self) -> float | None:
        return self.revocation.at if self.revocation is not None else None

    @property
    def revoked_by(self) -> str:
        return self.revocation.by if self.revocation is not None else ""


@dataclass(frozen=True)
class Membership:
    swarm_id: str
    owner: str  # the creator's peer id
    members: tuple[Member, ...] = ()
    settings: Settings | None = None  # None: every member may invite
    version: int = 0  # +1 on every change (a hint for people; merges do not depend on it)
    legacy: bool = field(default=False, compare=False)  # read from format 1: unsigned, HMAC'd with the secret

    def __post_init__(self) -> None:
        need(isinstance(self.swarm_id, str) and _SWARM_ID.fullmatch(self.swarm_id) is not None,
              "swarm id: 16 lowercase hex characters")
        need(is_peer(self.owner), f"not a peer id: {self.owner!r}")
        need(isinstance(self.version, int) and self.version >= 0, "version must be a non-negative integer")
        need(len(self.members) <= MAX_WIRE_MEMBERS, f"at most {MAX_MEMBERS} members")
        ids = [m.peer_id for m in self.members]
        need(len(ids) == len(set(ids)), "a peer id appears twice")

    def get(self, peer_id: str) -> Member | None:
        return next((m for m in self.members if m.peer_id == peer_id), None)

    @property
    def active(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.revoked)

    @property
    def invite_policy(self) -> InvitePolicy:
        return self.settings.invite if self.settings is not None else InvitePolicy.MEMBERS

    def role_of(self, peer_id: str) -> Role | None:
        member = self.get(peer_id)
        return member.role if member is not None else None


# ---- resolving statements into a list --------------------------------------------------------------------------------
def resolve(swarm_id: str, owner: str, sources: Iterable[Iterable[Member]],
             settings_candidates: Iterable[Settings | None], version: int) -> Membership:
    """The list that the statements in `sources` make (see the module doc), with every invalid statement dropped.
    Raises MembershipError when the owner's own entry is missing or unsigned."""
    pool: dict[str, list[Member]] = {}
    for source in sources:
        for x in source:
            pool.setdefault(x.peer_id, []).append(x)
    keys = {p: next((x.key for x in xs if x.key and peer_id_of_key(x.key) == p), "") for p, xs in pool.items()}

    def signed(signer: str, kind: str, body: dict, sig: str) -> bool:
        return bool(keys.get(signer)) and verify(keys[signer], statement_bytes(kind, swarm_id, body), sig)

    owner_admissions = [a for x in pool.get(owner, ()) for a in [x.admission] if a.by == owner and signed(
        owner, "admission", admission_body(owner, a), a.sig)]
    if not owner_admissions:
        raise MembershipError("the owner's entry is missing or not signed by the owner")
    settings = [s for s in settings_candidates if s is not None
                and signed(owner, "settings", {"invite": s.invite.value, "at": s.at}, s.sig)]
    setting = max(settings, key=lambda s: (s.at, s.invite.value), default=None)
    grants = {p: max((x.grant for x in xs if x.grant is not None and p != owner and signed(
        owner, "role", {"peer": p, "role": x.grant.role.value, "at": x.grant.at}, x.grant.sig)),
        key=lambda g: (g.at, g.role.value), default=None) for p, xs in pool.items()}
    role = {p: Role.OWNER if p == owner else (grants[p].role if grants[p] else Role.MEMBER) for p in pool}
    revocations = _revocations(pool, owner, role, signed)
    ends = {p: r.at if r is not None else math.inf for p, r in revocations.items()}
    admissions = _admissions(pool, owner, role, ends, setting, signed, min(owner_admissions, key=admission_key))
    members = []
    owner_name = _owner_name(pool[owner], owner, signed).casefold()
    for p, admission in sorted(admissions.items(), key=lambda item: (item[1].at, item[0])):
        profiles = [x.profile for x in pool[p] if x.profile is not None and signed(
            p, "profile", {"peer": p, "name": x.profile.name, "at": x.profile.at}, x.profile.sig)
            and (p == owner or x.profile.name.casefold() != owner_name)]  # no one else takes the owner's name
        profile = max(profiles, key=lambda f: (f.at, f.name), default=None)
        members.append(Member(p, admission, keys[p], profile, grants[p], revocations.get(p), role[p]))
    if len(members) > MAX_MEMBERS:  # keep the owner and the earliest; confirmed entries first
        members = [x for x in members if x.peer_id == owner] + sorted(
            (x for x in members if x.peer_id != owner), key=lambda x: (not x.admission.confirm, x.admission.at,
                                                                        x.peer_id))[: MAX_MEMBERS - 1]
        members.sort(key=lambda x: (x.admission.at, x.peer_id))
    return Membership(swarm_id, owner, tuple(members), setting, version)


def _owner_name(entries, owner: str, signed) -> str:
    profiles = [x.profile for x in entries if x.profile is not None and signed(
        owner, "profile", {"peer": owner, "name": x.profile.name, "at": x.profile.at}, x.profile.sig)]
    latest = max(profiles, key=lambda f: (f.at, f.name), default=None)
    return latest.name if latest is not None else min((x.admission for x in entries), key=admission_key).name


def _revocations(pool, owner: str, role: dict, signed) -> dict[str, Revocation | None]:
    """The earliest valid revocation of each peer: the owner's or confirmed ones always; an admin's unconfirmed one
    while its author is an admin (not revoked before it) and its target a plain member."""
    hard: dict[str, Revocation] = {}
    soft: dict[str, list[Revocation]] = {}
    for p, xs in pool.items():
        for r in (x.revocation for x in xs if x.revocation is not None and p != owner):
            body = {"peer": p, "by": r.by, "at": r.at}
            if not signed(r.by, "revocation", body, r.sig):
                continue
            confirmed = r.by in (owner, p) or (r.confirm and signed(owner, "revocation-confirm", body, r.confirm))
            r = r if confirmed or not r.confirm else replace(r, confirm="")
            if confirmed:
                hard[p] = min(r, hard.get(p, r), key=revocation_key)
            else:
                soft.setdefault(p, []).append(r)
    out: dict[str, Revocation | None] = dict(hard)
    for p, candidates in soft.items():
        if p in hard:
            continue
        valid = [r for r in candidates if role.get(r.by) is Role.ADMIN and role[p] is Role.MEMBER
                 and (r.by not in hard or hard[r.by].at > r.at)]
        if valid:
            out[p] = min(valid, key=revocation_key)
    return out


def _admissions(pool, owner: str, role: dict, ends: dict, setting: Settings | None, signed,
                own: Admission) -> dict[str, Admission]:
    """The earliest valid admission of each peer, admitters before those they admitted (see the module doc)."""
    valid: dict[str, Admission] = {owner: own}
    candidates = sorted(((x.admission, p) for p, xs in pool.items() if p != owner for x in xs),
                        key=lambda item: (admission_key(item[0]), item[1]))
    quota: Counter[str] = Counter()
    progress = True
    while progress:
        progress = False
        for a, p in candidates:
            if p in valid or a.by not in valid or a.by == p or ends.get(a.by, math.inf) <= a.at:
                continue
            body = admission_body(p, a)
            if not signed(a.by, "admission", body, a.sig):
                continue
            confirmed = a.by == owner or (a.confirm and signed(owner, "admission-confirm", body, a.confirm))
            if not confirmed:
                a = replace(a, confirm="")
                if role.get(a.by) is Role.MEMBER:
                    if setting is not None and setting.invite is InvitePolicy.ADMINS and a.at >= setting.at:
                        continue
                    if quota[a.by] >= MAX_ADMITTED_BY_MEMBER:
                        continue
                    quota[a.by] += 1
            valid[p] = a
            progress = True
    return valid


def admission_key(a: Admission) -> tuple:
    return (not a.confirm, a.at, a.by, a.sig)


def revocation_key(r: Revocation) -> tuple:
    return (not r.confirm, r.at, r.by, r.sig)


def admission_body(peer_id: str, a: Admission) -> dict:
    return {"peer": peer_id, "by": a.by, "at": a.at, "name": a.name, "invite": a.invite}


def signed_admission(swarm_id: str, peer_id: str, a: Admission, by: Signer) -> Admission:
    return replace(a, sig=by.sign(statement_bytes("admission", swarm_id, admission_body(peer_id, a))))


def confirmed_admission(swarm_id: str, peer_id: str, a: Admission, owner: Signer) -> Admission:
    return replace(a, confirm=owner.sign(statement_bytes("admission-confirm", swarm_id, admission_body(peer_id, a))))


# ---- small helpers ---------------------------------------------------------------------------------------------------
def is_peer(x: Any) -> bool:
    return isinstance(x, str) and _PEER_ID.fullmatch(x) is not None


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def need(ok: Any, message: str) -> None:
    if not ok:
        raise MembershipError(message)


def label(x: Member) -> str:
    return f"{x.name} ({x.peer_id[:12]}…)" if x.name else x.peer_id
