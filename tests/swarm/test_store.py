"""The swarms this PC knows: creation, secrets kept out of the JSON, invites and their redemption."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from potluck.core.secrets import SecretNotFound
from potluck.core.swarm import membership as ms
from potluck.core.swarm.codec import b58encode as _b58encode
from potluck.core.swarm.invite import decode_invite, encode_invite
from potluck.core.swarm.signing import Signer
from potluck.core.swarm.store import RedeemError, StoreError, SwarmNotFound, SwarmStore, parse_duration

NOW = 1_790_000_000.0
KEYS = {name: Signer.generate(1024) for name in ("ana", "bruno")}  # 1024 bits: quick, and signatures check the same
ANA, BRUNO = KEYS["ana"].peer_id, KEYS["bruno"].peer_id
CARLA = _b58encode(b"\x12\x20" + hashlib.sha256(b"carla").digest())
BOOT = (f"/ip4/100.101.1.1/tcp/31337/p2p/{ANA}",)


@pytest.fixture
def store(potluck_home, no_keyring) -> SwarmStore:
    return SwarmStore()


def test_create_list_get(store, potluck_home):
    info, where = store.create_swarm(" Friday night ", "meta-llama/Llama-3.1-8B-Instruct", "main", now=NOW)
    assert (info.name, info.model_id, info.created_here, info.created_at) == ("Friday night", info.model_id, True, NOW)
    assert where.kind == "file" and str(where).startswith("file:")
    assert store.path == potluck_home / "config" / "swarms.json"
    assert [s.swarm_id for s in store.list_swarms()] == [info.swarm_id]
    assert store.get(info.swarm_id) == info == store.get("FRIDAY NIGHT")
    assert len(store.secret(info.swarm_id)) == 32
    assert SwarmStore(store.path).get(info.swarm_id) == info  # a fresh instance reads the same file


def test_secret_never_reaches_the_json(store):
    info, _ = store.create_swarm("s", "m", "", creator=KEYS["ana"], creator_name="Ana", now=NOW)
    secret = store.secret(info.swarm_id)
    text = store.path.read_text()
    for form in (secret.hex(), base64.urlsafe_b64encode(secret).decode(), base64.b64encode(secret).decode()):
        assert form not in text


def test_swarm_ids_and_secrets_are_random(store):
    a, _ = store.create_swarm("a", "m", "")
    b, _ = store.create_swarm("b", "m", "")
    assert a.swarm_id != b.swarm_id and store.secret(a.swarm_id) != store.secret(b.swarm_id)


@pytest.mark.parametrize("name, model, message", [("", "m", "1 to 64"), ("x" * 65, "m", "1 to 64"),
                                                  ("tab\tname", "m", "printable"), ("ok", "  ", "model id")])
def test_create_refuses_bad_input(store, name, model, message):
    with pytest.raises(StoreError, match=message):
        store.create_swarm(name, model, "main")


def test_get_errors(store):
    store.create_swarm("same", "m", "")
    store.create_swarm("same", "m", "")
    with pytest.raises(StoreError, match="several swarms"):
        store.get("same")
    with pytest.raises(SwarmNotFound, match="knows no swarm"):
        store.get("other")


def test_remove_forgets_swarm_and_secret(store):
    info, where = store.create_swarm("s", "m", "")
    assert store.remove_swarm(info.swarm_id) == [where]
    assert store.list_swarms() == []
    with pytest.raises(SecretNotFound):
        store.secret(info.swarm_id)
    with pytest.raises(SwarmNotFound):
        store.remove_swarm(info.swarm_id)


def test_invite_round_trip_and_record(store):
    info, _ = store.create_swarm("Friday night", "meta-llama/Llama-3.1-8B-Instruct", "main", now=NOW)
    invite = store.create_invite(info.swarm_id, BOOT, expires_in_seconds=3600, max_uses=2, now=NOW)
    decoded = decode_invite(encode_invite(invite), now=NOW)
    assert decoded == invite and decoded.swarm_id == info.swarm_id and decoded.expires_at == NOW + 3600
    (record,) = store.get(info.swarm_id).invites
    assert (record.invite_id, record.uses_left, record.max_uses) == (invite.invite_id, 2, 2)
    assert invite.credential.hex() not in store.path.read_text()


def _redeem_n(store, invite, n, now):
    for _ in range(n):
        store.redeem(invite.invite_id, invite.credential, now=now)


@pytest.mark.parametrize("max_uses, used, now_offset, credential, cancel, message", [
    (1, 1, 10, None, False, r"already been used \(1 of 1 joins\)"),
    (3, 3, 10, None, False, r"already been used \(3 of 3 joins\)"),
    (1, 0, 3600, None, False, "expired on"),
    (1, 0, 10, b"x" * 16, False, "not valid"),
    (1, 0, 10, b"", False, "not valid"),
    (1, 0, 10, None, True, "cancelled"),
])
def test_redeem_refuses(store, max_uses, used, now_offset, credential, cancel, message):
    info, _ = store.create_swarm("s", "m", "", now=NOW)
    invite = store.create_invite(info.swarm_id, BOOT, expires_in_seconds=3600, max_uses=max_uses, now=NOW)
    _redeem_n(store, invite, used, NOW + 1)
    if cancel:
        store.cancel_invite(invite.invite_id)
    with pytest.raises(RedeemError, match=message):
        store.redeem(invite.invite_id, invite.credential if credential is None else credential, now=NOW + now_offset)


@pytest.mark.parametrize("max_uses, joins", [(1, 1), (2, 2), (None, 25)])
def test_redeem_allows_exactly_the_uses(store, max_uses, joins):
    info, _ = store.create_swarm("s", "m", "", now=NOW)
    invite = store.create_invite(info.swarm_id, BOOT, max_uses=max_uses, now=NOW)
    for i in range(joins):
        swarm, record = SwarmStore(store.path).redeem(invite.invite_id, invite.credential, now=NOW + i)  # persisted
        assert swarm.swarm_id == info.swarm_id
        assert record.uses_left == (None if max_uses is None else max_uses - i - 1)
    if max_uses is not None:
        with pytest.raises(RedeemError):
            store.redeem(invite.invite_id, invite.credential, now=NOW + joins)


def test_redeem_unknown_code(store):
    with pytest.raises(RedeemError, match="not known here"):
        store.redeem("0123456789ab", b"x" * 16)


@pytest.mark.parametrize("seconds", [0, 59, 366 * 86400])
def test_invite_lifetime_is_bounded(store, seconds):
    info, _ = store.create_swarm("s", "m", "")
    with pytest.raises(StoreError, match="between 1 minute and 365 days"):
        store.create_invite(info.swarm_id, BOOT, expires_in_seconds=seconds)


def test_old_expired_invites_are_pruned(store):
    info, _ = store.create_swarm("s", "m", "", now=NOW)
    old = store.create_invite(info.swarm_id, BOOT, expires_in_seconds=60, now=NOW)
    new = store.create_invite(info.swarm_id, BOOT, now=NOW + 40 * 86400)
    assert [r.invite_id for r in store.get(info.swarm_id).invites] == [new.invite_id]
    assert old.invite_id != new.invite_id


def test_membership_is_signed_merged_and_checked(store):
    info, _ = store.create_swarm("s", "m", "", creator=KEYS["ana"], creator_name="Ana", now=NOW)
    m = store.membership(info.swarm_id)
    assert [x.peer_id for x in m.members] == [ANA] and m.owner == ANA
    with_bruno = ms.add_member(m, BRUNO, "Bruno", KEYS["ana"], NOW + 1)
    store.save_membership(info.swarm_id, ms.revoke_member(with_bruno, BRUNO, KEYS["ana"], NOW + 2))
    stored = store.save_membership(info.swarm_id, with_bruno)  # a stale copy cannot undo the revocation
    assert stored.get(BRUNO).revoked and store.membership(info.swarm_id) == stored
    raw = json.loads(store.path.read_text())
    raw["swarms"][0]["membership"]["members"][1]["admission"]["name"] = "Mallory"  # edited on disk: no longer signed
    store.path.write_text(json.dumps(raw))
    assert [x.peer_id for x in store.membership(info.swarm_id).members] == [ANA]  # the edited entry is dropped
    raw["swarms"][0]["membership"]["members"][0]["admission"]["name"] = "Mallory"
    store.path.write_text(json.dumps(raw))
    with pytest.raises(ms.MembershipError, match="owner's entry"):
        store.membership(info.swarm_id)


def test_a_format_1_list_is_still_read(store):
    """Lists stored before they were signed by members (HMAC'd with the swarm secret) still open."""
    import hmac

    info, _ = store.create_swarm("s", "m", "", now=NOW)
    body = {"format": 1, "swarm_id": info.swarm_id, "version": 1, "members": [
        {"peer_id": ANA, "name": "Ana", "added_by": "", "added_at": NOW, "revoked_at": None, "revoked_by": ""}]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    mac = hmac.new(ms.subkey(store.secret(info.swarm_id), "membership"), canonical, hashlib.sha256).hexdigest()
    raw = json.loads(store.path.read_text())
    raw["swarms"][0]["membership"] = {"membership": body, "hmac": mac}
    store.path.write_text(json.dumps(raw))
    old = store.membership(info.swarm_id)
    assert old.legacy and old.owner == ANA
    assert store.save_membership(info.swarm_id, ms.migrate(old, KEYS["ana"])).owner == ANA  # the owner re-signs
    assert not store.membership(info.swarm_id).legacy


def test_invites_record_who_made_and_used_them_and_revocation_cancels_them(store):
    info, _ = store.create_swarm("s", "m", "", creator=KEYS["ana"], now=NOW)
    mine = store.create_invite(info.swarm_id, BOOT, max_uses=None, now=NOW, created_by=ANA)
    theirs = store.create_invite(info.swarm_id, BOOT, max_uses=None, now=NOW, created_by=CARLA)
    other = store.create_invite(info.swarm_id, BOOT, max_uses=None, now=NOW, created_by=ANA)
    store.redeem(mine.invite_id, mine.credential, now=NOW + 1, peer_id=BRUNO)
    assert store.get(info.swarm_id).invites[0].redeemed_by == (BRUNO,)
    assert SwarmStore(store.path).get(info.swarm_id).invites[0].redeemed_by == (BRUNO,)  # kept on disk
    assert store.cancel_invites_of(info.swarm_id, [BRUNO, CARLA]) == 2  # used by Bruno, made by Carla
    assert [r.cancelled for r in store.get(info.swarm_id).invites] == [True, True, False]
    assert store.cancel_invites_of(info.swarm_id, [BRUNO, CARLA]) == 0
    with pytest.raises(RedeemError, match="cancelled"):
        store.redeem(theirs.invite_id, theirs.credential, now=NOW + 2)
    assert store.cancel_invites_of(info.swarm_id, [], [other.invite_id]) == 1


def test_a_newer_secret_replaces_the_old_one_never_an_older(store):
    info, _ = store.create_swarm("s", "m", "", creator=KEYS["ana"], now=NOW)
    assert (info.secret_epoch, info.secret_covers) == (0, 0)
    store.set_secret(info.swarm_id, b"n" * 32, 1, "proof", covers=1, now=NOW + 5)
    after = store.get(info.swarm_id)
    assert store.secret(info.swarm_id) == b"n" * 32 and (after.secret_epoch, after.secret_proof,
                                                         after.secret_covers, after.secret_since) == (1, "proof", 1, NOW + 5)
    with pytest.raises(StoreError, match="not newer"):
        store.set_secret(info.swarm_id, b"o" * 32, 1, "proof")
    assert store.secret(info.swarm_id) == b"n" * 32


def test_joined_swarm_is_remembered_with_its_secret(store):
    invite = decode_invite(encode_invite(_foreign_invite()), now=NOW)
    secret = b"j" * 32
    m = ms.add_member(ms.new_membership(invite.swarm_id, KEYS["ana"], "Ana", NOW), BRUNO, "Bruno", KEYS["ana"], NOW)
    info, where = store.add_joined_swarm(invite, secret, membership=m, epoch=3, proof="p", now=NOW)
    assert (info.secret_epoch, info.secret_proof) == (3, "p")
    assert (info.created_here, info.bootstrap, info.name) == (False, BOOT, "Their swarm")
    assert store.secret(invite.swarm_id) == secret and store.membership(invite.swarm_id) == m
    assert where.kind == "file"


def _foreign_invite():
    from potluck.core.swarm.invite import Invite
    return Invite("Their swarm", "00112233aabbccdd", "org/model", "main", BOOT, b"c" * 16, int(NOW) + 60, 1)


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read"),
    ('{"swarms": "nope"}', "not a Potluck swarm list"),
    ('{"format": 9, "swarms": []}', "newer Potluck"),
    ('{"format": 1, "swarms": [{"name": "x"}]}', "damaged"),
    ('{"format": 1, "swarms": [{"swarm_id": "../../x", "name": "x", "model_id": "m", "model_revision": "",'
     ' "created_at": 1, "created_here": true}]}', "damaged"),
])
def test_damaged_store_gives_clear_errors(store, content, message):
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text(content)
    with pytest.raises(StoreError, match=message):
        store.list_swarms()


def test_unknown_fields_from_newer_versions_are_tolerated(store):
    info, _ = store.create_swarm("s", "m", "")
    raw = json.loads(store.path.read_text())
    raw["swarms"][0]["colour"] = "teal"
    store.path.write_text(json.dumps(raw))
    assert store.get(info.swarm_id) == info


def test_writes_are_atomic_and_leave_no_temporary_files(store):
    for i in range(5):
        store.create_swarm(f"s{i}", "m", "")
    assert sorted(p.name for p in store.path.parent.iterdir() if p.is_file()) == ["swarms.json"]


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
                                           ("3600", 3600), (" 1D ", 86400), ("60s", 60)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7 days", "-1d", "1.5h", "30s", "400d", "7y"])
def test_parse_duration_refuses(text):
    with pytest.raises(StoreError):
        parse_duration(text)
