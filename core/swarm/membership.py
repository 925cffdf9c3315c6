"""Who belongs to a swarm, and who may change what: a member list made of signed statements. Pure functions over
frozen data (signatures: core/swarm/signing.py).

Every part of an entry is a statement signed by the one peer allowed to make it:
- admission  {peer, by, at, name, invite}  signed by the member who admitted it (the owner admits itself);
- profile    {peer, name, at}              signed by the member itself: only you rename you;
- role       {peer, role, at}              signed by the owner: admin or member (the owner's role never changes);
- revocation {peer, by, at}                signed by the owner, by an admin (not against an admin or the owner),
                                           or by the member itself (it leaves);
- settings   {invite, at}                  signed by the owner: who may invite (`members` or only `admins`).
The owner is the swarm's creator. Its peer id is fixed in the list: a list naming another owner is refused.

The owner's PC countersigns (`confirm`) admissions and revocations made by others when it sees them. A confirmed
statement stands whatever happens to its author later. An unconfirmed one stands while its author may still make
it: an admission while its author may invite (role, invite setting, and a plain member's quota of
MAX_ADMITTED_BY_MEMBER) and was not revoked before it; an admin's revocation while its author is an admin.
So demoting an admin takes back the revocations the owner's PC had not seen, never those it had.

`merge` takes the union of two copies' statements and keeps, per entry, the earliest valid admission, the latest
valid profile and role, and the earliest valid revocation (confirmed ones first): it is commutative, and
statements nobody may make are dropped. Revocation is permanent for a peer id. The list holds at most
MAX_MEMBERS entries. A list read from format 1 (`from_legacy`, HMAC'd with the swarm secret, unsigned) is used
as it is until the owner's PC re-signs it (`migrate`) or a signed list from the same owner arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import replace
from typing import Any, Mapping

from potluck.core.swarm.member_list import (  # noqa: F401  (the list's records are part of this module's API)
    MAX_ADMITTED_BY_MEMBER,
    MAX_MEMBERS,
    MAX_WIRE_MEMBERS,
    Admission,
    InvitePolicy,
    Member,
    Membership,
    MembershipError,
    Profile,
    Revocation,
    Role,
    RoleGrant,
    Settings,
    admission_body,
    confirmed_admission,
    is_num,
    is_peer,
    label,
    need,
    resolve,
    signed_admission,
)
from potluck.core.swarm.signing import Signer, peer_id_of_key, statement_bytes, verify

MEMBERSHIP_FORMAT = 2
LEGACY_FORMAT = 1
_INVITE_ID = re.compile(r"[0-9a-f]{0,32}")


# ---- rules ------------------------------------------------------------------------------------------------------------
def is_active_member(m: Membership | None, peer_id: str) -> bool:
    """True if `peer_id` is listed and not revoked. False for None (no list known: refuse everyone)."""
    member = m.get(peer_id) if m is not None else None
    return member is not None and not member.revoked


def may_invite(m: Membership, peer_id: str) -> str | None:
    """None if `peer_id` may admit someone now, else why not (in words)."""
    member = m.get(peer_id)
    if member is None or member.revoked:
        return "this PC is not an active member of the swarm"
    if member.role is Role.MEMBER and m.invite_policy is InvitePolicy.ADMINS:
        return "in this swarm only the owner and admins may invite"
    if member.role is Role.MEMBER and not m.legacy and sum(1 for x in m.members if x.admission.by == peer_id and not x.admission.confirm) >= MAX_ADMITTED_BY_MEMBER:
        return (f"this PC has admitted {MAX_ADMITTED_BY_MEMBER} members the owner has not confirmed yet; "
                "wait until the owner's PC is online, or ask an admin to invite")
    return None


def may_revoke(m: Membership, by: str, target: str) -> str | None:
    """None if `by` may revoke `target` now, else why not (in words)."""
    who, what = m.get(by), m.get(target)
    if what is None:
        return f"{target} is not a member of this swarm"
    if what.revoked:
        return f"{label(what)} was already revoked"
    if target == m.owner:
        return "no one can revoke the swarm's owner"
    if who is None or who.revoked:
        return "this PC is not an active member of the swarm"
    if by == target or who.role is Role.OWNER or (who.role is Role.ADMIN and what.role is Role.MEMBER):
        return None  # (a member may always leave: revoke itself)
    if who.role is Role.ADMIN:
        return "only the owner can revoke an admin"
    return "only the swarm's owner and admins can revoke members"


# ---- changes (each signed by the signer given) --------------------------------------------------------------------
def new_membership(swarm_id: str, owner: Signer, name: str, now: float) -> Membership:
    """The list of a new swarm: its owner, admitting itself."""
    me = owner.peer_id
    admission = signed_admission(swarm_id, me, Admission(me, now, _name(name)), owner)
    return resolve(swarm_id, me, [[Member(me, admission, owner.public_key)]], [], 1)


def add_member(m: Membership, peer_id: str, name: str, by: Signer, now: float, *, key: str = "",
               invite: str = "") -> Membership:
    """Admit `peer_id` (its base64 key when known). Raises MembershipError if it is listed, or `by` may not invite."""
    need(is_peer(peer_id), f"not a peer id: {peer_id!r}")
    existing = m.get(peer_id)
    if existing is not None and existing.revoked:
        raise MembershipError(f"{label(existing)} was revoked; revoked peers cannot rejoin with the same identity")
    if existing is not None:
        raise MembershipError(f"{label(existing)} is already a member")
    refusal = may_invite(m, by.peer_id)
    if refusal:
        raise MembershipError(refusal)
    m = learn_key(m, by.peer_id, by.public_key)  # so that others can check what it signs
    need(len(m.members) < MAX_MEMBERS, f"the list is full ({MAX_MEMBERS} entries, revoked ones included)")
    need(_INVITE_ID.fullmatch(invite) is not None, "invite id: hex")
    need(not key or peer_id_of_key(key) == peer_id, "the key given does not belong to this peer id")
    name = _name(name)
    if _owners_name(m, name):
        name = f"{name[:57]} ({peer_id[-4:]})"  # the owner's name stays the owner's
    admission = signed_admission(m.swarm_id, peer_id, Admission(by.peer_id, _time(now), name, invite), by)
    if by.peer_id == m.owner:
        admission = confirmed_admission(m.swarm_id, peer_id, admission, by)
    return _changed(m, [Member(peer_id, admission, key)])


def revoke_member(m: Membership, peer_id: str, by: Signer, now: float) -> Membership:
    """Revoke `peer_id` for good. Raises MembershipError if unknown, revoked already, or `by` may not revoke it."""
    refusal = may_revoke(m, by.peer_id, peer_id)
    if refusal:
        raise MembershipError(refusal)
    m = learn_key(m, by.peer_id, by.public_key)
    body = {"peer": peer_id, "by": by.peer_id, "at": _time(now)}
    revocation = Revocation(by.peer_id, body["at"], by.sign(statement_bytes("revocation", m.swarm_id, body)))
    return _changed(m, [replace(m.get(peer_id), revocation=revocation)])


def set_name(m: Membership, me: Signer, name: str, now: float) -> Membership:
    """This member's new name, signed by itself."""
    member = m.get(me.peer_id)
    need(member is not None, "this PC is not on the member list")
    need(me.peer_id == m.owner or not _owners_name(m, name), "that is the owner's name: choose another")
    body = {"peer": me.peer_id, "name": _name(name), "at": _time(now)}
    profile = Profile(body["name"], body["at"], me.sign(statement_bytes("profile", m.swarm_id, body)))
    return _changed(m, [replace(member, profile=profile, key=member.key or me.public_key)])


def set_role(m: Membership, peer_id: str, role: Role, owner: Signer, now: float) -> Membership:
    """Make an active member an admin or a plain member (the owner only). Everything the owner's list holds is
    countersigned first, so what the member did while an admin stands."""
    need(owner.peer_id == m.owner, "only the swarm's owner can change roles")
    need(role in (Role.ADMIN, Role.MEMBER), "a role is admin or member")
    target = m.get(peer_id)
    need(target is not None and not target.revoked, f"{peer_id} is not an active member")
    need(peer_id != m.owner, "the owner's role cannot change")
    m = confirm_all(m, owner)
    body = {"peer": peer_id, "role": role.value, "at": _time(now)}
    grant = RoleGrant(role, body["at"], owner.sign(statement_bytes("role", m.swarm_id, body)))
    return _changed(m, [replace(m.get(peer_id), grant=grant)])


def set_invite_policy(m: Membership, policy: InvitePolicy, owner: Signer, now: float) -> Membership:
    """Who may invite from now on (the owner only); admissions made so far are countersigned first."""
    need(owner.peer_id == m.owner, "only the swarm's owner can change who may invite")
    m = confirm_all(m, owner)
    body = {"invite": InvitePolicy(policy).value, "at": _time(now)}
    settings = Settings(InvitePolicy(policy), body["at"], owner.sign(statement_bytes("settings", m.swarm_id, body)))
    return _changed(m, [], settings=settings)


def confirm_all(m: Membership, owner: Signer) -> Membership:
    """The owner countersigns every admission and revocation made by others that its list holds (what the owner's
    node does on each merge). Returns `m` itself when nothing was left to confirm."""
    if owner.peer_id != m.owner or m.legacy:
        return m
    changed = []
    for x in m.members:
        admission, revocation = x.admission, x.revocation
        if admission.by != m.owner and not admission.confirm:
            admission = confirmed_admission(m.swarm_id, x.peer_id, admission, owner)
        if revocation is not None and revocation.by != m.owner and not revocation.confirm:
            body = {"peer": x.peer_id, "by": revocation.by, "at": revocation.at}
            revocation = replace(revocation, confirm=owner.sign(statement_bytes("revocation-confirm", m.swarm_id, body)))
        if (admission, revocation) != (x.admission, x.revocation):
            changed.append(replace(x, admission=admission, revocation=revocation))
    return _changed(m, changed) if changed else m


def learn_key(m: Membership, peer_id: str, key: str) -> Membership:
    """Attach a member's public key (checked against its peer id) when the list lacks it."""
    member = m.get(peer_id)
    if member is None or member.key or peer_id_of_key(key) != peer_id:
        return m
    return _changed(m, [replace(member, key=key)])


def merge(a: Membership, b: Membership) -> Membership:
    """Union of two copies of the same swarm's list (see the module doc). A format-1 list gives way to a signed
    one of the same owner. Raises MembershipError for lists of different swarms or owners."""
    need(a.swarm_id == b.swarm_id, "cannot merge lists of different swarms")
    need(a.owner == b.owner, "this list names another owner for the swarm")
    if a.legacy or b.legacy:
        return a if b.legacy else replace(b, version=max(a.version, b.version) + 1)
    merged = resolve(a.swarm_id, a.owner, [a.members, b.members], [a.settings, b.settings], 0)
    unchanged = (merged.members, merged.settings) in ((a.members, a.settings), (b.members, b.settings))
    return replace(merged, version=max(a.version, b.version) + (0 if unchanged else 1))


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
    raise MembershipError(f"{query!r} matches several members: " + ", ".join(label(x) for x in matches))


def secret_proof_message(swarm_id: str, epoch: int, secret: bytes) -> bytes:
    """What the owner signs when it makes the swarm's secret number `epoch` (core/swarm/rotation.py)."""
    return statement_bytes("secret", swarm_id, {"epoch": epoch, "sha256": hashlib.sha256(secret).hexdigest()})


def secret_proof_is_valid(m: Membership | None, epoch: int, secret: bytes, proof: str) -> bool:
    """True if the owner of `m` signed `secret` as the swarm's secret number `epoch` (>= 1)."""
    if m is None or not isinstance(epoch, int) or epoch < 1 or not isinstance(secret, bytes) or m.legacy:
        return False
    owner = m.get(m.owner)
    return owner is not None and bool(owner.key) and verify(owner.key, secret_proof_message(m.swarm_id, epoch, secret),
                                                            proof)


def subkey(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose derived from the swarm secret (HMAC-SHA256 as a KDF), so that a value made for one
    purpose (a DHT access token) is never valid for another."""
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise MembershipError("the swarm secret must be at least 16 bytes")
    return hmac.new(secret, b"potluck/v1/" + purpose.encode(), hashlib.sha256).digest()


def _changed(m: Membership, entries: list[Member], settings: Settings | None = None) -> Membership:
    new = resolve(m.swarm_id, m.owner, [entries, m.members], [settings, m.settings], m.version + 1)
    for x in entries:
        need(new.get(x.peer_id) is not None and _same(new.get(x.peer_id), x), "this change is not valid")
    return new


def _same(kept: Member, made: Member) -> bool:
    return (kept.admission, kept.profile, kept.grant, kept.revocation) == (
        made.admission, made.profile, made.grant, made.revocation)


# ---- small helpers ---------------------------------------------------------------------------------------------------
def _name(name: str) -> str:
    need(isinstance(name, str) and len(name.strip()) <= 64 and name.isprintable(),
          "member name: at most 64 printable characters")
    return name.strip()


def _owners_name(m: Membership, name: str) -> bool:
    owner = m.get(m.owner)
    return owner is not None and owner.name.casefold() == name.strip().casefold()


def _time(now: float) -> float:
    need(is_num(now) and now >= 0, "a time must be unix seconds")
    return float(now)


# ---- on the wire and on disk -----------------------------------------------------------------------------------------
def to_wire(m: Membership) -> dict[str, Any]:
    """The list as plain JSON data (format 2). Its statements carry their own signatures: no secret is needed."""
    need(not m.legacy, "a format-1 list must be migrated by the owner's PC before it is sent")
    return {"format": MEMBERSHIP_FORMAT, "swarm_id": m.swarm_id, "owner": m.owner, "version": m.version,
            "settings": None if m.settings is None else {"invite": m.settings.invite.value, "at": m.settings.at,
                                                          "sig": m.settings.sig},
            "members": [_member_to_wire(x) for x in m.members]}


def from_wire(wire: Any, *, swarm_id: str | None = None, owner: str | None = None) -> Membership:
    """The list a format-2 wire value makes, every statement checked; statements nobody may make are dropped.
    Raises MembershipError for a malformed list, another swarm's (`swarm_id`) or another owner's (`owner`)."""
    need(isinstance(wire, Mapping), "membership must be a mapping")
    need(wire.get("format") == MEMBERSHIP_FORMAT, f"unsupported membership format {str(wire.get('format'))[:20]!r}")
    members = wire.get("members")
    need(isinstance(members, list) and len(members) <= MAX_WIRE_MEMBERS,
         f"members must be a list of at most {MAX_WIRE_MEMBERS} entries")
    need(isinstance(wire.get("swarm_id"), str) and is_peer(wire.get("owner")), "malformed membership list")
    need(swarm_id is None or wire["swarm_id"] == swarm_id, f"this membership list is for swarm "
         f"{str(wire['swarm_id'])[:16]}, not {swarm_id}")
    need(owner is None or wire["owner"] == owner, "this list names another owner for the swarm")
    version = wire.get("version")
    need(isinstance(version, int) and not isinstance(version, bool) and 0 <= version < 2**53, "bad version")
    settings = wire.get("settings")
    try:
        parsed = [_member_from_wire(x) for x in members]
        if settings is not None:
            settings = Settings(InvitePolicy(_field(settings, "invite", str)), _at(settings), _sig(settings, "sig"))
    except (KeyError, TypeError, ValueError) as e:
        raise MembershipError(f"malformed membership list ({type(e).__name__}: {e})") from None
    return resolve(wire["swarm_id"], wire["owner"], [[x] for x in parsed], [settings], version)


def from_legacy(signed: Any, secret: bytes, *, swarm_id: str | None = None) -> Membership:
    """A format-1 list (what Potluck stored before lists were signed by their members): checked with the HMAC of
    the swarm secret it was stored with. Its owner is its creator (the entry no one added)."""
    need(isinstance(signed, Mapping) and isinstance(signed.get("hmac"), str) and "membership" in signed,
         "not a signed membership list")
    body = signed["membership"]
    canonical = _canonical(body)
    mac = hmac.new(subkey(secret, "membership"), canonical, hashlib.sha256).hexdigest()
    need(hmac.compare_digest(mac, signed["hmac"]), "the membership list was changed or signed with another secret")
    try:
        need(body.get("format") == LEGACY_FORMAT, "not a format-1 list")
        members = []
        for x in body["members"][:MAX_WIRE_MEMBERS]:
            peer, at = x["peer_id"], x["added_at"]
            need(is_peer(peer) and is_num(at), "malformed entry")
            revocation = None
            if x.get("revoked_at") is not None:
                revocation = Revocation(x.get("revoked_by") or peer, float(x["revoked_at"]))
            members.append(Member(peer, Admission(x.get("added_by") or peer, float(at), str(x.get("name", ""))[:64]),
                                  revocation=revocation))
        owners = [x.peer_id for x in members if x.admission.by == x.peer_id]
        need(len(owners) == 1, "a format-1 list names no single creator")
        m = Membership(body["swarm_id"], owners[0], tuple(members), None, int(body["version"]), legacy=True)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MembershipError(f"malformed membership list ({type(e).__name__}: {e})") from None
    need(swarm_id is None or m.swarm_id == swarm_id, f"this membership list is for swarm {m.swarm_id}, not {swarm_id}")
    return replace(m, members=tuple(replace(x, role=Role.OWNER if x.peer_id == m.owner else Role.MEMBER)
                                    for x in m.members))


def migrate(legacy: Membership, owner: Signer) -> Membership:
    """The owner's PC re-signs a format-1 list: every entry is admitted (and, if it was, revoked) by the owner,
    at the times the old list gives. Only the owner can do it; other PCs wait for the owner's signed list."""
    need(legacy.legacy and owner.peer_id == legacy.owner, "only the owner's PC can re-sign a format-1 list")
    me = legacy.get(owner.peer_id)
    m = new_membership(legacy.swarm_id, owner, me.name, me.added_at)
    for x in sorted(legacy.members, key=lambda x: (x.added_at, x.peer_id)):
        if x.peer_id == owner.peer_id:
            continue
        admission = signed_admission(legacy.swarm_id, x.peer_id, Admission(owner.peer_id, x.added_at, x.name), owner)
        entry = Member(x.peer_id, confirmed_admission(legacy.swarm_id, x.peer_id, admission, owner))
        if x.revoked:
            body = {"peer": x.peer_id, "by": owner.peer_id, "at": x.revoked_at}
            entry = replace(entry, revocation=Revocation(owner.peer_id, x.revoked_at,
                                                         owner.sign(statement_bytes("revocation", m.swarm_id, body))))
        m = _changed(m, [entry])
    return replace(m, version=legacy.version + 1)


def _member_to_wire(x: Member) -> dict[str, Any]:
    a, p, g, r = x.admission, x.profile, x.grant, x.revocation
    return {"peer_id": x.peer_id, "key": x.key,
            "admission": {"by": a.by, "at": a.at, "name": a.name, "invite": a.invite, "sig": a.sig,
                          "confirm": a.confirm},
            "profile": None if p is None else {"name": p.name, "at": p.at, "sig": p.sig},
            "role": None if g is None else {"role": g.role.value, "at": g.at, "sig": g.sig},
            "revocation": None if r is None else {"by": r.by, "at": r.at, "sig": r.sig, "confirm": r.confirm}}


def _member_from_wire(x: Any) -> Member:
    need(isinstance(x, Mapping), "a member must be a mapping")
    peer, key = _field(x, "peer_id", str), x.get("key", "")
    need(is_peer(peer) and isinstance(key, str) and len(key) <= 1200, "bad peer id or key")
    a = _field(x, "admission", Mapping)
    admission = Admission(_peer(a, "by"), _at(a), _text(a, "name", 64), _text(a, "invite", 32), _sig(a, "sig"),
                          _sig(a, "confirm", ""))
    profile = grant = revocation = None
    if x.get("profile") is not None:
        f = _field(x, "profile", Mapping)
        profile = Profile(_text(f, "name", 64), _at(f), _sig(f, "sig"))
    if x.get("role") is not None:
        g = _field(x, "role", Mapping)
        grant = RoleGrant(Role(_field(g, "role", str)), _at(g), _sig(g, "sig"))
        need(grant.role is not Role.OWNER, "the owner role is not granted")
    if x.get("revocation") is not None:
        r = _field(x, "revocation", Mapping)
        revocation = Revocation(_peer(r, "by"), _at(r), _sig(r, "sig"), _sig(r, "confirm", ""))
    return Member(peer, admission, key, profile, grant, revocation)


def _field(d: Mapping, name: str, kind: type) -> Any:
    value = d[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} has the wrong type")
    return value


def _text(d: Mapping, name: str, max_chars: int) -> str:
    value = d.get(name, "")
    need(isinstance(value, str) and len(value) <= max_chars and value.isprintable(), f"bad {name}")
    return value


def _sig(d: Mapping, name: str, default: str | None = None) -> str:
    value = d.get(name, default)
    need(isinstance(value, str) and len(value) <= 700, f"bad {name}")
    return value


def _peer(d: Mapping, name: str) -> str:
    value = d.get(name)
    need(is_peer(value), f"bad {name}")
    return value


def _at(d: Mapping) -> float:
    value = d.get("at")
    need(is_num(value) and value >= 0, "a time must be unix seconds")
    return float(value)


def _canonical(body: Any) -> bytes:
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except (TypeError, ValueError):
        raise MembershipError("membership list is not plain JSON data") from None
