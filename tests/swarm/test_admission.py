"""Access tokens of the swarm authorizer, judged one by one (no network), and the p2p settings."""

from __future__ import annotations

import asyncio
import inspect
import pickle
import time

import pytest
from hivemind.dht import DHT
from hivemind.dht.crypto import RSASignatureValidator
from hivemind.dht.node import DHTNode
from hivemind.p2p import P2P, PeerID
from hivemind.proto import crypto_pb2
from hivemind.proto.auth_pb2 import AccessToken

from potluck.core.swarm import admission as ad
from potluck.core.swarm import membership as ms

SWARM = "5c0ffee15a1ad000"
SECRET = b"k" * 32


@pytest.fixture(scope="session")
def members(ids) -> ms.Membership:
    m = ms.new_membership(SWARM, ids["ana"].signer, "Ana", 1.0)
    m = ms.add_member(m, ids["bruno"].peer_id, "Bruno", ids["ana"].signer, 2.0)
    m = ms.add_member(m, ids["carla"].peer_id, "Carla", ids["ana"].signer, 3.0)
    return ms.revoke_member(m, ids["carla"].peer_id, ids["ana"].signer, 4.0)


def authorizer(ids, name, membership, secret=SECRET, swarm=SWARM, **kw) -> ad.SwarmAuthorizer:
    return ad.SwarmAuthorizer(swarm, secret, ids[name].key, membership, **kw)


def test_peer_id_matches_what_p2pd_derives(ids):
    for who in ids.values():
        with open(who.path, "rb") as f:
            assert who.peer_id == PeerID.from_identity(f.read()).to_base58()


def test_load_identity_refuses_other_key_types(tmp_path):
    path = tmp_path / "ed25519"
    path.write_bytes(crypto_pb2.PrivateKey(key_type=crypto_pb2.KeyType.Ed25519, data=b"\0" * 64).SerializeToString())
    with pytest.raises(ValueError, match="not an RSA identity"):
        ad.load_identity(str(path))


def _remac(auth: ad.SwarmAuthorizer, token: AccessToken, **fields) -> AccessToken:
    for name, value in fields.items():
        setattr(token, name, value)
    token.signature = auth._mac(token)
    return token


def _token(ids, name, members, secret=SECRET, swarm=SWARM) -> tuple[ad.SwarmAuthorizer, AccessToken]:
    auth = authorizer(ids, name, members, secret, swarm)
    return auth, asyncio.run(auth.get_token())


TOKEN_CASES = {
    "member": (lambda ids, m: _token(ids, "bruno", m)[1], None),
    "wrong secret": (lambda ids, m: _token(ids, "bruno", m, secret=b"w" * 32)[1], "bad_signature"),
    "same secret, other swarm": (lambda ids, m: _token(ids, "bruno", m, swarm="0000000000000000")[1],
                                 "bad_signature"),
    "edited after signing": (lambda ids, m: _edit(_token(ids, "mallory", m)[1], username=ids["ana"].peer_id),
                             "bad_signature"),
    "no token at all": (lambda ids, m: AccessToken(), "bad_signature"),
    "expired": (lambda ids, m: _remac(*_token(ids, "bruno", m), expiration_time=f"{time.time() - 1:.3f}"),
                "expired"),
    "claims an hour": (lambda ids, m: _remac(*_token(ids, "bruno", m), expiration_time=f"{time.time() + 3600:.3f}"),
                       "expired"),
    "unreadable expiry": (lambda ids, m: _remac(*_token(ids, "bruno", m), expiration_time="soon"), "bad_expiry"),
    "borrows a member's peer id": (lambda ids, m: _remac(*_token(ids, "mallory", m), username=ids["ana"].peer_id),
                                   "wrong_identity"),
    "not an RSA key": (lambda ids, m: _remac(*_token(ids, "bruno", m), public_key=b"ssh-ed25519 AAAA"),
                       "wrong_identity"),
    "revoked member": (lambda ids, m: _token(ids, "carla", m)[1], "revoked"),
    "has the secret, not on the list": (lambda ids, m: _token(ids, "mallory", m)[1], "not_member"),
}


def _edit(token: AccessToken, **fields) -> AccessToken:
    for name, value in fields.items():
        setattr(token, name, value)
    return token


@pytest.mark.parametrize("make_token, reason", TOKEN_CASES.values(), ids=TOKEN_CASES.keys())
def test_token_validation(ids, members, make_token, reason):
    judge = authorizer(ids, "ana", members)
    token = make_token(ids, members)
    assert judge.refusal_reason(token) == reason
    assert judge.is_token_valid(token) is (reason is None)
    assert judge.stats == {reason or "accepted": 1}


def test_own_token_is_valid_even_when_revoked(ids, members):
    carla, token = _token(ids, "carla", members)
    assert carla.is_token_valid(token) and carla.stats == {}  # others judge it; our own calls must not crash


@pytest.mark.parametrize("source", ["list", "store", "none"])
def test_authorizer_survives_pickling(ids, members, source):
    src = {"list": members, "store": ad.StoreMembership(SWARM, "/nonexistent/swarms.json"), "none": None}[source]
    # 90 s: a 60 s token from `_token` is well inside its window (30 s put it on the edge: flaky "expired")
    auth = authorizer(ids, "ana", src, token_lifetime_seconds=90, membership_refresh_seconds=2)
    copy = pickle.loads(pickle.dumps(auth))
    token = _token(ids, "bruno", members)[1]
    assert (copy.local_peer_id, copy._lifetime, copy._refresh) == (auth.local_peer_id, 90.0, 2.0)
    assert copy.refusal_reason(token) == auth.refusal_reason(token) == (None if source == "list" else "not_member")


def test_no_member_list_or_another_swarms_list_refuses_everyone(ids, members):
    token = _token(ids, "bruno", None)[1]
    assert authorizer(ids, "ana", None).refusal_reason(token) == "not_member"
    other = ms.Membership("0000000000000000", members.owner, members.members, None, members.version)
    assert authorizer(ids, "ana", other).refusal_reason(token) == "not_member"
    assert authorizer(ids, "ana", members).refusal_reason(token) is None


def test_membership_source_is_reread_and_failures_keep_the_last_list(ids, members):
    current = {"list": ms.add_member(ms.new_membership(SWARM, ids["ana"].signer, "Ana", 1.0),
                                     ids["bruno"].peer_id, "Bruno", ids["ana"].signer, 2.0)}

    def source():
        if current["list"] is None:
            raise OSError("store unreadable")
        return current["list"]

    judge = authorizer(ids, "ana", source, membership_refresh_seconds=0)
    token = _token(ids, "bruno", members)[1]
    assert judge.refusal_reason(token) is None
    current["list"] = ms.revoke_member(current["list"], ids["bruno"].peer_id, ids["ana"].signer, 3.0)
    assert judge.refusal_reason(token) == "revoked"
    current["list"] = None  # the source breaks: the last good list (with the revocation) stays
    assert judge.refusal_reason(token) == "revoked"


def test_slow_refresh_caches_and_set_membership_overrides(ids, members):
    calls = []
    judge = authorizer(ids, "ana", lambda: calls.append(1) or members, membership_refresh_seconds=3600)
    token = _token(ids, "bruno", members)[1]
    for _ in range(5):
        assert judge.refusal_reason(token) is None
    assert len(calls) == 1
    judge.set_membership(ms.revoke_member(members, ids["bruno"].peer_id, ids["ana"].signer, 5.0))
    assert judge.refusal_reason(token) == "revoked"


@pytest.mark.parametrize("expires_in, needs", [(60, False), (31, False), (29, True), (-5, True), (None, True)])
def test_token_refresh(ids, members, expires_in, needs):
    auth = authorizer(ids, "ana", members)
    token = AccessToken(expiration_time="garbage" if expires_in is None else f"{time.time() + expires_in:.3f}")
    assert auth.does_token_need_refreshing(token) is needs


@pytest.mark.parametrize("peer_id, expected", [("ana", True), ("bruno", True), ("carla", False), ("mallory", False)])
def test_is_member(ids, members, peer_id, expected):
    assert ad.is_member(ids[peer_id].peer_id, members) is expected
    assert ad.is_member(ids[peer_id].peer_id, None) is False


def _accepted_parameters() -> set[str]:
    names = set()
    for func in (P2P.create, DHTNode.create, DHT.__init__):
        names |= set(inspect.signature(func).parameters)
    return names


@pytest.mark.parametrize("host, port, listen, announce", [
    ("100.101.1.1", 31337, ["/ip4/100.101.1.1/tcp/31337"], ["/ip4/100.101.1.1/tcp/31337"]),
    ("127.0.0.1", 0, ["/ip4/127.0.0.1/tcp/0"], None),
    ("fd7a:115c:a1e0::1", 5000, ["/ip6/fd7a:115c:a1e0::1/tcp/5000"], ["/ip6/fd7a:115c:a1e0::1/tcp/5000"]),
])
def test_tailnet_p2p_kwargs(host, port, listen, announce):
    kw = ad.tailnet_p2p_kwargs(host, port)
    assert set(kw) <= _accepted_parameters()  # every name is a real hivemind parameter
    assert (kw["host_maddrs"], kw["announce_maddrs"]) == (listen, announce)
    assert kw["use_relay"] is kw["use_auto_relay"] is kw["nat_port_map"] is kw["auto_nat"] is kw["use_ipfs"] is False
    assert kw["dht_mode"] == "server"
    defaults = inspect.signature(P2P.create).parameters
    assert defaults["use_relay"].default is True and defaults["nat_port_map"].default is True  # why we set them


def test_swarm_dht_kwargs_and_record_owner(ids, members):
    auth = authorizer(ids, "ana", members)
    kw = ad.swarm_dht_kwargs(auth, ids["ana"].path, "100.101.1.1", 31337, ["/ip4/100.101.1.2/tcp/1/p2p/Qm"])
    assert set(kw) <= _accepted_parameters()
    assert kw["authorizer"] is auth and kw["identity_path"] == ids["ana"].path
    (validator,) = kw["record_validators"]
    assert isinstance(validator, RSASignatureValidator)
    assert ad.owner_peer_id(b"block-7" + validator.local_public_key) == ids["ana"].peer_id
    assert ad.owner_peer_id(b"no owner here") is None
    assert ad.owner_peer_id(b"[owner:not a key]") is None


def test_a_new_secret_refuses_old_tokens_after_the_grace(ids, members):
    """Secret rotation: tokens made with the previous secret pass for `grace_seconds`, then are refused."""
    judge = authorizer(ids, "ana", members)
    old_token = _token(ids, "bruno", members)[1]
    judge.set_secret(b"n" * 32, grace_seconds=0.3)
    new_token = _token(ids, "bruno", members, secret=b"n" * 32)[1]
    assert judge.refusal_reason(old_token) is None and judge.refusal_reason(new_token) is None
    assert judge._local_access_token is None  # our own next token is made with the new secret
    time.sleep(0.35)
    assert judge.refusal_reason(old_token) == "bad_signature" and judge.refusal_reason(new_token) is None
    judge.set_secret(b"m" * 32)  # no grace: the previous secret stops at once
    assert judge.refusal_reason(new_token) == "bad_signature"
    assert pickle.loads(pickle.dumps(judge))._secret == b"m" * 32  # a spawned DHT process gets the current secret
