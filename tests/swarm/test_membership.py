"""Member lists made of signed statements: who may change what, merges that keep only what its authors could do,
the size bound, format-1 lists, and what a hostile member can no longer do to the list (issue 13, finding 4)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json

import pytest

from potluck.core.swarm import membership as ms
from potluck.core.swarm.membership import Membership, MembershipError, Role
from potluck.core.swarm.services import merge_offers
from potluck.core.swarm.signing import Signer

SWARM = "5c0ffee15a1ad000"
SECRET = b"s" * 32


def pid(name: str) -> str:
    """A well-formed peer id nobody holds the key of."""
    from potluck.core.swarm.codec import b58encode

    return b58encode(b"\x12\x20" + hashlib.sha256(name.encode()).digest())


@pytest.fixture(scope="module")
def keys() -> dict[str, Signer]:
    return {name: Signer.generate() for name in ("ana", "bruno", "carla", "dani", "mallory")}


def club(keys, *, bruno_admin=False) -> Membership:
    """Ana (owner) admitted Bruno and Mallory; Bruno admitted Carla."""
    k = keys
    m = ms.new_membership(SWARM, k["ana"], "Ana", 100.0)
    m = ms.add_member(m, k["bruno"].peer_id, "Bruno", k["ana"], 200.0, key=k["bruno"].public_key)
    m = ms.add_member(m, k["mallory"].peer_id, "Mallory", k["ana"], 210.0, key=k["mallory"].public_key)
    m = ms.add_member(m, k["carla"].peer_id, "Carla", k["bruno"], 300.0, key=k["carla"].public_key)
    return ms.set_role(m, k["bruno"].peer_id, Role.ADMIN, k["ana"], 310.0) if bruno_admin else m


def names(m: Membership) -> dict[str, str]:
    return {x.peer_id: x.name for x in m.members}


def test_new_add_and_check(keys):
    m = club(keys)
    ana, bruno, carla = (keys[n].peer_id for n in ("ana", "bruno", "carla"))
    assert [x.name for x in m.members] == ["Ana", "Bruno", "Mallory", "Carla"] and m.version == 4
    assert m.owner == ana and [x.role for x in m.members] == [Role.OWNER, Role.MEMBER, Role.MEMBER, Role.MEMBER]
    assert m.get(carla).added_by == bruno and m.get(ana).added_by == "" and m.get(carla).added_at == 300.0
    assert [ms.is_active_member(m, p) for p in (ana, bruno, carla, keys["dani"].peer_id)] == [True, True, True, False]
    assert ms.is_active_member(None, ana) is False
    assert m.get(bruno).admission.confirm and not m.get(carla).admission.confirm  # the owner's own are confirmed


@pytest.mark.parametrize("by, target, allowed", [
    ("ana", "bruno", True), ("ana", "carla", True),  # the owner revokes anyone but itself
    ("bruno", "carla", True),  # an admin revokes a member
    ("bruno", "ana", False), ("carla", "bruno", False),  # no one revokes the owner; a member revokes no one
    ("carla", "mallory", False), ("mallory", "carla", False),
    ("carla", "carla", True),  # a member may leave
    ("dani", "carla", False),  # not a member at all
])
def test_who_may_revoke(keys, by, target, allowed):
    m = club(keys, bruno_admin=True)
    if not allowed:
        with pytest.raises(MembershipError):
            ms.revoke_member(m, keys[target].peer_id, keys[by], 400.0)
        return
    after = ms.revoke_member(m, keys[target].peer_id, keys[by], 400.0)
    x = after.get(keys[target].peer_id)
    assert (x.revoked, x.revoked_at, x.revoked_by) == (True, 400.0, keys[by].peer_id)
    assert ms.merge(after, m) == ms.merge(m, after) and ms.merge(after, m).get(x.peer_id).revoked


def test_admins_may_not_revoke_admins_and_only_the_owner_changes_roles(keys):
    m = ms.set_role(club(keys, bruno_admin=True), keys["carla"].peer_id, Role.ADMIN, keys["ana"], 320.0)
    with pytest.raises(MembershipError, match="only the owner can revoke an admin"):
        ms.revoke_member(m, keys["carla"].peer_id, keys["bruno"], 400.0)
    for who in ("bruno", "carla"):
        with pytest.raises(MembershipError, match="only the swarm's owner can change roles"):
            ms.set_role(m, keys["mallory"].peer_id, Role.ADMIN, keys[who], 400.0)
    with pytest.raises(MembershipError, match="only the swarm's owner"):
        ms.set_invite_policy(m, ms.InvitePolicy.ADMINS, keys["bruno"], 400.0)


@pytest.mark.parametrize("change, message", [
    (lambda m, k: ms.add_member(m, k["bruno"].peer_id, "Bruno again", k["ana"], 1.0), "already a member"),
    (lambda m, k: ms.add_member(m, k["dani"].peer_id, "Dani", k["dani"], 1.0), "not an active member"),
    (lambda m, k: ms.add_member(ms.revoke_member(m, k["carla"].peer_id, k["ana"], 400.0), k["dani"].peer_id, "Dani",
                                k["carla"], 500.0), "not an active member"),
    (lambda m, k: ms.add_member(ms.revoke_member(m, k["carla"].peer_id, k["ana"], 400.0), k["carla"].peer_id, "C",
                                k["ana"], 500.0), "was revoked"),
    (lambda m, k: ms.revoke_member(m, k["dani"].peer_id, k["ana"], 1.0), "not a member"),
    (lambda m, k: ms.revoke_member(ms.revoke_member(m, k["carla"].peer_id, k["ana"], 1.0), k["carla"].peer_id,
                                   k["ana"], 2.0), "already revoked"),
    (lambda m, k: ms.add_member(m, "not-a-peer-id", "x", k["ana"], 1.0), "not a peer id"),
    (lambda m, k: ms.add_member(m, k["dani"].peer_id, "x" * 65, k["ana"], 1.0), "64"),
    (lambda m, k: ms.add_member(m, k["dani"].peer_id, "Dani", k["ana"], float("nan")), "unix seconds"),
    (lambda m, k: ms.add_member(m, k["dani"].peer_id, "Dani", k["ana"], 1.0, key=k["carla"].public_key),
     "does not belong"),
    (lambda m, k: ms.set_name(m, k["mallory"], "ana", 400.0), "the owner's name"),
    (lambda m, k: ms.add_member(ms.set_invite_policy(m, ms.InvitePolicy.ADMINS, k["ana"], 350.0), k["dani"].peer_id,
                                "Dani", k["carla"], 400.0), "only the owner and admins may invite"),
])
def test_invalid_changes_are_refused(keys, change, message):
    with pytest.raises(MembershipError, match=message):
        change(club(keys), keys)


def test_names_are_changed_by_their_members_only(keys):
    m = ms.set_name(club(keys), keys["carla"], "Carla's laptop", 400.0)
    assert m.get(keys["carla"].peer_id).name == "Carla's laptop"
    assert ms.merge(m, club(keys)).get(keys["carla"].peer_id).name == "Carla's laptop"  # the latest profile wins
    joined = ms.add_member(m, keys["dani"].peer_id, "ANA", keys["ana"], 500.0)
    assert joined.get(keys["dani"].peer_id).name.startswith("ANA (")  # a newcomer never shows as the owner


@pytest.mark.parametrize("query, expected", [("bruno", "Bruno"), ("  Carla ", "Carla"), (8, "Carla")])
def test_find_member(keys, query, expected):
    m = club(keys)
    query = keys["carla"].peer_id[:query] if isinstance(query, int) else query
    assert ms.find_member(m, query).name == expected
    with pytest.raises(MembershipError, match="no member matches"):
        ms.find_member(m, "Dani")


def test_merge_is_a_union_where_revocation_wins(keys):
    base = club(keys)
    here = ms.revoke_member(base, keys["carla"].peer_id, keys["ana"], 400.0)  # one PC revokes Carla
    there = ms.add_member(base, keys["dani"].peer_id, "Dani", keys["bruno"], 450.0)  # another admits Dani
    merged = ms.merge(here, there)
    assert merged == ms.merge(there, here)  # order does not matter
    assert ms.merge(merged, here) == merged and ms.merge(merged, merged) == merged  # nothing new, nothing changes
    assert [x.name for x in merged.active] == ["Ana", "Bruno", "Mallory", "Dani"]
    assert merged.get(keys["carla"].peer_id).revoked_at == 400.0
    assert merged.version == max(here.version, there.version) + 1
    with pytest.raises(MembershipError, match="different swarms"):
        ms.merge(base, ms.new_membership("0000000000000000", keys["ana"], "Ana", 1.0))
    with pytest.raises(MembershipError, match="another owner"):
        ms.merge(base, ms.new_membership(SWARM, keys["mallory"], "Mallory", 1.0))


def test_the_owner_confirms_and_confirmed_statements_outlive_their_author(keys):
    k = keys
    m = club(k, bruno_admin=True)
    m = ms.add_member(m, k["dani"].peer_id, "Dani", k["bruno"], 400.0)
    unconfirmed = ms.revoke_member(m, k["carla"].peer_id, k["bruno"], 410.0)
    # demoted on a PC that never saw the revocation: Bruno's unconfirmed revocation lapses, his admission stays
    demoted_elsewhere = ms.set_role(m, k["bruno"].peer_id, Role.MEMBER, k["ana"], 420.0)
    lapsed = ms.merge(demoted_elsewhere, unconfirmed)
    assert not lapsed.get(k["carla"].peer_id).revoked and ms.is_active_member(lapsed, k["dani"].peer_id)
    # the owner's PC saw it first: set_role countersigns before demoting, so it stands
    kept = ms.set_role(unconfirmed, k["bruno"].peer_id, Role.MEMBER, k["ana"], 420.0)
    assert kept.get(k["carla"].peer_id).revocation.confirm and ms.merge(kept, demoted_elsewhere).get(
        k["carla"].peer_id).revoked
    assert ms.confirm_all(kept, k["ana"]) is kept and ms.confirm_all(kept, k["bruno"]) is kept


def test_a_revoked_members_later_admissions_do_not_count(keys):
    k = keys
    m = club(k)
    before = ms.add_member(m, k["dani"].peer_id, "Dani", k["carla"], 350.0)  # Carla admits Dani, then is revoked
    revoked = ms.revoke_member(before, k["carla"].peer_id, k["ana"], 400.0)
    assert ms.is_active_member(revoked, k["dani"].peer_id)
    late = ms.add_member(m, k["dani"].peer_id, "Dani", k["carla"], 450.0)  # made after her revocation
    assert not ms.is_active_member(ms.merge(ms.revoke_member(m, k["carla"].peer_id, k["ana"], 400.0), late),
                                   k["dani"].peer_id)


def test_wire_round_trip_tolerates_unknown_fields(keys):
    m = ms.revoke_member(ms.set_name(club(keys), keys["carla"], "C", 350.0), keys["carla"].peer_id, keys["ana"], 400.0)
    wire = json.loads(json.dumps(ms.to_wire(m)))
    wire["from_the_future"] = 1
    wire["members"][0]["avatar"] = "🦊"
    assert ms.from_wire(wire, swarm_id=SWARM, owner=m.owner) == m


# ---- what a member holding the list can do to it ----------------------------------------------------------------------
def _edit(m: Membership, change) -> dict:
    wire = copy.deepcopy(ms.to_wire(m))
    change(wire)
    return wire


def _sign(signer: Signer, kind: str, body: dict) -> str:
    from potluck.core.swarm.signing import statement_bytes

    return signer.sign(statement_bytes(kind, SWARM, body))


def _entry(wire: dict, peer_id: str) -> dict:
    return next(x for x in wire["members"] if x["peer_id"] == peer_id)


def mallory_swaps_names(keys, wire):
    ana, mal = _entry(wire, keys["ana"].peer_id), _entry(wire, keys["mallory"].peer_id)
    ana["profile"] = {"name": "Mallory", "at": 999.0, "sig": _sign(keys["mallory"], "profile", {
        "peer": keys["ana"].peer_id, "name": "Mallory", "at": 999.0})}
    mal["profile"] = {"name": "Ana", "at": 999.0, "sig": _sign(keys["mallory"], "profile", {
        "peer": keys["mallory"].peer_id, "name": "Ana", "at": 999.0})}


def mallory_revokes_everyone(keys, wire):
    for x in wire["members"]:
        if x["peer_id"] != keys["mallory"].peer_id:
            body = {"peer": x["peer_id"], "by": keys["mallory"].peer_id, "at": 999.0}
            x["revocation"] = {"by": keys["mallory"].peer_id, "at": 999.0, "sig": _sign(keys["mallory"], "revocation",
                                                                                         body), "confirm": ""}


def mallory_makes_herself_admin(keys, wire):
    body = {"peer": keys["mallory"].peer_id, "role": "admin", "at": 999.0}
    _entry(wire, keys["mallory"].peer_id)["role"] = {"role": "admin", "at": 999.0, "sig": _sign(keys["mallory"],
                                                                                               "role", body)}


def mallory_renames_the_owner_in_place(keys, wire):
    _entry(wire, keys["ana"].peer_id)["admission"]["name"] = "Mallory"


@pytest.mark.parametrize("attack", [mallory_swaps_names, mallory_revokes_everyone, mallory_makes_herself_admin,
                                    mallory_renames_the_owner_in_place])
def test_a_member_cannot_rewrite_the_list(keys, attack):
    """Mallory, an active member, edits the list she holds, signs what she can with her own key, publishes it; an
    honest node merges it (services.merge_offers). Today's lists HMAC'd with the swarm secret took all of it."""
    honest = club(keys)
    wire = _edit(honest, lambda w: attack(keys, w))
    try:
        offered = ms.from_wire(wire, swarm_id=SWARM)
    except MembershipError:
        return  # the owner's own entry no longer checks out: the whole list is refused
    merged = merge_offers(honest, [(keys["mallory"].peer_id, offered)])
    assert names(merged) == names(honest)
    assert [x.peer_id for x in merged.active] == [x.peer_id for x in honest.active]
    assert [x.role for x in merged.members] == [x.role for x in honest.members]


def test_a_member_cannot_claim_the_swarm(keys):
    honest = club(keys)
    mine = ms.add_member(ms.new_membership(SWARM, keys["mallory"], "Ana", 50.0), keys["bruno"].peer_id, "B",
                         keys["mallory"], 60.0)
    assert merge_offers(honest, [(keys["mallory"].peer_id, mine)]) == honest
    with pytest.raises(MembershipError, match="another owner"):
        ms.from_wire(ms.to_wire(mine), owner=honest.owner)


@pytest.mark.parametrize("policy, kept", [(ms.InvitePolicy.MEMBERS, ms.MAX_ADMITTED_BY_MEMBER),
                                          (ms.InvitePolicy.ADMINS, 0)])
def test_junk_entries_are_bounded_and_a_friend_can_still_be_admitted(keys, policy, kept):
    honest = ms.set_invite_policy(club(keys), policy, keys["ana"], 150.0) if policy is ms.InvitePolicy.ADMINS \
        else club(keys)
    wire = ms.to_wire(honest)
    junk = [pid(f"junk {i}") for i in range(ms.MAX_WIRE_MEMBERS - len(honest.members))]
    for i, peer in enumerate(junk):
        body = {"peer": peer, "by": keys["mallory"].peer_id, "at": 500.0 + i, "name": f"junk {i}", "invite": ""}
        wire["members"].append({"peer_id": peer, "key": "", "admission": {**{k: v for k, v in body.items() if k != "peer"},
                                "sig": _sign(keys["mallory"], "admission", body), "confirm": ""}})
    merged = merge_offers(honest, [(keys["mallory"].peer_id, ms.from_wire(wire, swarm_id=SWARM))])
    assert len(merged.members) == len(honest.members) + kept
    friend = ms.add_member(merged, keys["dani"].peer_id, "Dani", keys["ana"], 2000.0)
    assert ms.is_active_member(friend, keys["dani"].peer_id)
    wire["members"] += wire["members"][:2]
    with pytest.raises(MembershipError, match="at most"):
        ms.from_wire(wire)  # over twice the bound: refused before a single signature is checked


def test_the_size_bound_keeps_the_owner_and_the_earliest(keys):
    honest = club(keys)
    wire = ms.to_wire(honest)
    for i in range(ms.MAX_MEMBERS):  # more friends than the list holds, all admitted by the owner
        body = {"peer": pid(f"friend {i}"), "by": keys["ana"].peer_id, "at": 1000.0 + i, "name": f"f{i}", "invite": ""}
        wire["members"].append({"peer_id": body["peer"], "admission": {**{k: v for k, v in body.items() if k != "peer"},
                                "sig": _sign(keys["ana"], "admission", body)}})
    m = ms.from_wire(wire)
    assert len(m.members) == ms.MAX_MEMBERS and m.members[:4] == honest.members  # the latest ones fell off
    assert m.members[-1].name == f"f{ms.MAX_MEMBERS - 5}"
    with pytest.raises(MembershipError, match="the list is full"):
        ms.add_member(m, keys["dani"].peer_id, "Dani", keys["ana"], 5000.0)


# ---- format 1 and the secret's proof ------------------------------------------------------------------------------------
def legacy_signed(keys) -> dict:
    """A list as Potluck stored it before: format 1, HMAC'd with a key derived from the swarm secret."""
    k = keys
    body = {"format": 1, "swarm_id": SWARM, "version": 3, "members": [
        {"peer_id": k["ana"].peer_id, "name": "Ana", "added_by": "", "added_at": 1.0, "revoked_at": None,
         "revoked_by": ""},
        {"peer_id": k["bruno"].peer_id, "name": "Bruno", "added_by": k["ana"].peer_id, "added_at": 2.0,
         "revoked_at": None, "revoked_by": ""},
        {"peer_id": k["carla"].peer_id, "name": "Carla", "added_by": k["bruno"].peer_id, "added_at": 3.0,
         "revoked_at": 4.0, "revoked_by": k["ana"].peer_id}]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return {"membership": body, "hmac": hmac.new(ms.subkey(SECRET, "membership"), canonical, hashlib.sha256).hexdigest()}


def test_format_1_lists_are_read_and_the_owner_re_signs_them(keys):
    old = ms.from_legacy(legacy_signed(keys), SECRET, swarm_id=SWARM)
    assert old.legacy and old.owner == keys["ana"].peer_id and [x.name for x in old.active] == ["Ana", "Bruno"]
    tampered = legacy_signed(keys)
    tampered["membership"]["members"][2]["revoked_at"] = None
    with pytest.raises(MembershipError, match="changed"):
        ms.from_legacy(tampered, SECRET)
    with pytest.raises(MembershipError, match="only the owner"):
        ms.migrate(old, keys["bruno"])
    new = ms.migrate(old, keys["ana"])
    assert not new.legacy and [x.name for x in new.active] == ["Ana", "Bruno"] and new.get(keys["carla"].peer_id).revoked
    assert ms.from_wire(ms.to_wire(new)) == new
    assert ms.merge(old, new).members == ms.merge(new, old).members == new.members  # the signed list wins


def test_secret_proofs(keys):
    m, secret = club(keys), b"n" * 32
    proof = keys["ana"].sign(ms.secret_proof_message(SWARM, 2, secret))
    assert ms.secret_proof_is_valid(m, 2, secret, proof)
    assert not ms.secret_proof_is_valid(m, 3, secret, proof)  # another epoch
    assert not ms.secret_proof_is_valid(m, 2, b"x" * 32, proof)  # another secret
    assert not ms.secret_proof_is_valid(m, 2, secret, keys["bruno"].sign(ms.secret_proof_message(SWARM, 2, secret)))


def test_subkeys_differ_by_purpose_and_secret():
    keys = {ms.subkey(SECRET, "membership"), ms.subkey(SECRET, "dht-token"), ms.subkey(b"t" * 32, "membership")}
    assert len(keys) == 3
    with pytest.raises(MembershipError, match="at least 16 bytes"):
        ms.subkey(b"short", "x")


@pytest.mark.parametrize("wire, message", [
    ({"format": 1}, "unsupported membership format"),
    ({"format": 2, "swarm_id": SWARM, "owner": "x", "version": 1, "members": []}, "malformed"),
    ({"format": 2, "swarm_id": SWARM, "owner": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "version": -1,
      "members": []}, "bad version"),
    ({"format": 2, "swarm_id": SWARM, "owner": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "version": 1,
      "members": []}, "owner's entry is missing"),
    ({"format": 2, "swarm_id": SWARM, "owner": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "version": 1,
      "members": [{"peer_id": 5}]}, "malformed"),
    ("text", "must be a mapping"),
])
def test_malformed_lists_are_refused(wire, message):
    with pytest.raises(MembershipError, match=message):
        ms.from_wire(wire)
