"""Member lists: add, revoke, look up, merge, and signatures that catch tampering."""

from __future__ import annotations

import copy
import hashlib

import pytest

from potluck.core.swarm import membership as ms
from potluck.core.swarm.codec import b58encode as _b58encode
from potluck.core.swarm.membership import Member, Membership, MembershipError

SWARM = "5c0ffee15a1ad000"
SECRET = b"s" * 32


def pid(name: str) -> str:
    return _b58encode(b"\x12\x20" + hashlib.sha256(name.encode()).digest())


ANA, BRUNO, CARLA, DANI = pid("ana"), pid("bruno"), pid("carla"), pid("dani")


def swarm() -> Membership:
    m = ms.new_membership(SWARM, ANA, "Ana", 100.0)
    m = ms.add_member(m, BRUNO, "Bruno", ANA, 200.0)
    return ms.add_member(m, CARLA, "Carla", BRUNO, 300.0)


def test_new_add_and_check():
    m = swarm()
    assert [x.name for x in m.members] == ["Ana", "Bruno", "Carla"] and m.version == 3
    assert m.get(CARLA).added_by == BRUNO and m.get(ANA).added_by == ""
    assert [ms.is_active_member(m, p) for p in (ANA, BRUNO, CARLA, DANI)] == [True, True, True, False]
    assert ms.is_active_member(None, ANA) is False


def test_revoke():
    m = ms.revoke_member(swarm(), BRUNO, ANA, 400.0)
    bruno = m.get(BRUNO)
    assert (bruno.revoked, bruno.revoked_at, bruno.revoked_by) == (True, 400.0, ANA)
    assert not ms.is_active_member(m, BRUNO) and ms.is_active_member(m, CARLA)
    assert [x.name for x in m.active] == ["Ana", "Carla"] and m.version == 4


@pytest.mark.parametrize("change, message", [
    (lambda m: ms.add_member(m, BRUNO, "Bruno again", ANA, 1.0), "already a member"),
    (lambda m: ms.add_member(m, DANI, "Dani", pid("stranger"), 1.0), "not an active member"),
    (lambda m: ms.add_member(ms.revoke_member(m, BRUNO, ANA, 1.0), DANI, "Dani", BRUNO, 2.0), "not an active member"),
    (lambda m: ms.add_member(ms.revoke_member(m, BRUNO, ANA, 1.0), BRUNO, "Bruno", ANA, 2.0), "was revoked"),
    (lambda m: ms.revoke_member(m, DANI, ANA, 1.0), "not a member"),
    (lambda m: ms.revoke_member(ms.revoke_member(m, BRUNO, ANA, 1.0), BRUNO, ANA, 2.0), "already revoked"),
    (lambda m: ms.add_member(m, "not-a-peer-id", "x", ANA, 1.0), "not a peer id"),
    (lambda m: ms.add_member(m, DANI, "x" * 65, ANA, 1.0), "64"),
    (lambda m: ms.add_member(m, DANI, "Dani", ANA, float("nan")), "unix seconds"),
])
def test_invalid_changes_are_refused(change, message):
    with pytest.raises(MembershipError, match=message):
        change(swarm())


@pytest.mark.parametrize("query, expected", [
    (BRUNO, "Bruno"), ("bruno", "Bruno"), ("  Carla ", "Carla"), (CARLA[:8], "Carla"),
])
def test_find_member(query, expected):
    assert ms.find_member(swarm(), query).name == expected


@pytest.mark.parametrize("query, message", [("Dani", "no member matches"), ("Qm", "no member matches"),
                                            ("Qm1234", "no member matches")])
def test_find_member_errors(query, message):
    with pytest.raises(MembershipError, match=message):
        ms.find_member(swarm(), query)


def test_find_member_ambiguous_name():
    m = ms.add_member(swarm(), DANI, "Carla", ANA, 500.0)
    with pytest.raises(MembershipError, match="several members"):
        ms.find_member(m, "carla")


def test_merge_is_a_union_where_revocation_wins():
    base = swarm()
    here = ms.revoke_member(base, CARLA, ANA, 400.0)  # one PC revokes Carla
    there = ms.add_member(base, DANI, "Dani", BRUNO, 450.0)  # another admits Dani
    merged = ms.merge(here, there)
    assert merged == ms.merge(there, here)  # order does not matter
    assert ms.merge(merged, here) == merged and ms.merge(merged, merged) == merged  # nothing new, nothing changes
    assert [x.name for x in merged.active] == ["Ana", "Bruno", "Dani"]
    assert merged.get(CARLA).revoked_at == 400.0
    assert merged.version == max(here.version, there.version) + 1


def test_merge_keeps_earliest_revocation_and_refuses_other_swarms():
    a = ms.revoke_member(swarm(), CARLA, ANA, 500.0)
    b = ms.revoke_member(swarm(), CARLA, BRUNO, 450.0)
    assert ms.merge(a, b).get(CARLA).revoked_by == BRUNO
    with pytest.raises(MembershipError, match="different swarms"):
        ms.merge(a, Membership("0000000000000000"))


def test_wire_round_trip_tolerates_unknown_fields():
    m = ms.revoke_member(swarm(), BRUNO, ANA, 400.0)
    wire = ms.to_wire(m)
    wire["from_the_future"] = 1
    wire["members"][0]["avatar"] = "🦊"
    assert ms.from_wire(wire) == m


def _tamper(path, value):
    def change(signed):
        target = signed["membership"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


TAMPERING = {
    "rename a member": _tamper(["members", 1, "name"], "Mallory"),
    "un-revoke": _tamper(["members", 1, "revoked_at"], None),
    "swap a peer id": _tamper(["members", 2, "peer_id"], DANI),
    "move to another swarm": _tamper(["swarm_id"], "0000000000000000"),
    "bump the version": _tamper(["version"], 99),
    "add a member": lambda s: s["membership"]["members"].append(
        {"peer_id": DANI, "name": "Dani", "added_by": ANA, "added_at": 1.0, "revoked_at": None, "revoked_by": ""}),
    "drop a member": lambda s: s["membership"]["members"].pop(),
    "edit the mac": lambda s: s.update(hmac=s["hmac"][:-1] + ("0" if s["hmac"][-1] != "0" else "1")),
    "remove the mac": lambda s: s.pop("hmac"),
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampered_lists_are_refused(tamper):
    signed = ms.sign_membership(ms.revoke_member(swarm(), BRUNO, ANA, 400.0), SECRET)
    assert ms.verify_membership(copy.deepcopy(signed), SECRET).get(BRUNO).revoked  # untouched: fine
    tamper(signed)
    with pytest.raises(MembershipError):
        ms.verify_membership(signed, SECRET)


@pytest.mark.parametrize("signed, secret, swarm_id, message", [
    (ms.sign_membership(swarm(), SECRET), b"t" * 32, None, "another swarm's secret"),
    (ms.sign_membership(swarm(), SECRET), SECRET, "0000000000000000", "is for swarm"),
    ({"membership": {}}, SECRET, None, "not a signed membership"),
    ("text", SECRET, None, "not a signed membership"),
    (ms.sign_membership(swarm(), SECRET), b"short", None, "at least 16 bytes"),
])
def test_verify_refuses_wrong_secret_or_swarm(signed, secret, swarm_id, message):
    with pytest.raises(MembershipError, match=message):
        ms.verify_membership(signed, secret, swarm_id=swarm_id)


def test_subkeys_differ_by_purpose_and_secret():
    keys = {ms.subkey(SECRET, "membership"), ms.subkey(SECRET, "dht-token"), ms.subkey(b"t" * 32, "membership")}
    assert len(keys) == 3


@pytest.mark.parametrize("build, message", [
    (lambda: Membership("XYZ"), "swarm id"),
    (lambda: Membership(SWARM, (Member(ANA, "a", "", 1.0), Member(ANA, "b", "", 2.0))), "appears twice"),
    (lambda: Member(ANA, "a", "", 1.0, revoked=True), "go together"),
    (lambda: Member(ANA, "a", "", -1.0), "unix seconds"),
    (lambda: Membership(SWARM, version=-1), "version"),
])
def test_records_check_their_fields(build, message):
    with pytest.raises(MembershipError, match=message):
        build()
