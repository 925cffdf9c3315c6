"""Real hivemind DHTs on 127.0.0.1: members share records; outsiders, other swarms and revoked members get nothing.

Each attack speaks the DHT protocol directly to a member (ping, find, store), so every attempt reaches the
member's authorizer; the test counts attempts and successes and asserts that no attempt succeeded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import hivemind
import pytest
from hivemind.dht.routing import DHTID
from hivemind.p2p import PeerID
from hivemind.utils.serializer import MSGPackSerializer
from hivemind.utils.timed_storage import get_dht_time

from potluck.core.swarm import admission as ad
from potluck.core.swarm import membership as ms
from potluck.core.swarm.store import SwarmStore

from .members import authorizer_stats
from .test_admission import SECRET, SWARM

pytestmark = pytest.mark.slow
ROUNDS = 3  # attack rounds per target; each round is a ping, a find and a store


async def _attack(target: str, key: str, tag: str, rounds: int, dht, node) -> dict[str, int]:
    """Runs inside a DHT's process: try to ping, read `key` from, and store into `target`."""
    peer, key_id = PeerID.from_base58(target), DHTID.generate(source=key)
    done = {"attempts": 0, "ping": 0, "answered_find": 0, "read": 0, "store": 0}
    for i in range(rounds):
        done["attempts"] += 3
        done["ping"] += await node.protocol.call_ping(peer) is not None
        found = await node.protocol.call_find(peer, [key_id])
        done["answered_find"] += found is not None
        done["read"] += found is not None and found[key_id][0] is not None
        stored = await node.protocol.call_store(peer, [DHTID.generate(source=f"{tag}-{i}")],
                                                [MSGPackSerializer.dumps(tag)], get_dht_time() + 60)
        done["store"] += bool(stored and any(stored))
    return done


def attack(attacker, target, key: str, tag: str) -> dict[str, int]:
    return attacker.run_coroutine(functools.partial(_attack, str(target.peer_id), key, tag, ROUNDS))


def refusals(dht) -> int:
    return sum(n for reason, n in authorizer_stats(dht).items() if reason != "accepted")


def maddrs(dht) -> list[str]:
    return [str(a) for a in dht.get_visible_maddrs()]


def start(stack, who=None, secret=SECRET, membership=None, peers=(), swarm=SWARM, authorized=True, **kw):
    """A DHT on loopback that is shut down when `stack` closes."""
    if authorized:
        auth = ad.SwarmAuthorizer(swarm, secret, who.key, membership, **kw)
        kwargs = ad.swarm_dht_kwargs(auth, who.path, "127.0.0.1", 0, peers)
    else:
        kwargs = {**ad.tailnet_p2p_kwargs("127.0.0.1"), "initial_peers": list(peers)}
    dht = hivemind.DHT(start=True, check_if_identity_free=False, ensure_bootstrap_success=False, **kwargs)
    stack.callback(dht.shutdown)
    return dht


def listed(ids, *names, revoked=()):
    m = ms.new_membership(SWARM, ids[names[0]].signer, names[0], 1.0)
    for name in names[1:]:
        m = ms.add_member(m, ids[name].peer_id, name, ids[names[0]].signer, 2.0)
    for name in revoked:
        m = ms.revoke_member(m, ids[name].peer_id, ids[names[0]].signer, 3.0)
    return m


def expires() -> float:
    return get_dht_time() + 120


def test_members_with_the_secret_see_each_others_records(ids):
    members = listed(ids, "ana", "bruno")
    with contextlib.ExitStack() as stack:
        a = start(stack, ids["ana"], membership=members)
        b = start(stack, ids["bruno"], membership=members, peers=maddrs(a))
        assert a.store("from-ana", "hello", expires()) and b.store("from-bruno", "hi", expires())
        assert b.get("from-ana", latest=True).value == "hello"
        assert a.get("from-bruno", latest=True).value == "hi"
        assert attack(b, a, "from-ana", "bruno-probe")["read"] == ROUNDS  # the probe itself works for members
        assert refusals(a) == refusals(b) == 0


OUTSIDERS = {
    "no authorizer": dict(authorized=False),
    "wrong secret": dict(who="mallory", secret=os.urandom(32), listed_as=()),
    "has the secret, not on the list": dict(who="mallory", listed_as=()),
    "revoked member": dict(who="carla", listed_as=("carla",), revoked=("carla",)),
    "member of another swarm": dict(who="carla", secret=os.urandom(32), swarm="0000000000000000", listed_as=()),
}


@pytest.mark.parametrize("outsider", OUTSIDERS.values(), ids=OUTSIDERS.keys())
def test_outsiders_cannot_join_read_or_store(ids, outsider):
    members = listed(ids, "ana", "bruno", *outsider.get("listed_as", ()), revoked=outsider.get("revoked", ()))
    with contextlib.ExitStack() as stack:
        a = start(stack, ids["ana"], membership=members)
        b = start(stack, ids["bruno"], membership=members, peers=maddrs(a))
        a.store("swarm-secret-record", "private", expires())
        if outsider.get("authorized", True):
            own = ms.new_membership(outsider.get("swarm", SWARM), ids[outsider["who"]].signer, "me", 1.0)
            o = start(stack, ids[outsider["who"]], secret=outsider.get("secret", SECRET), membership=own,
                      peers=maddrs(a), swarm=outsider.get("swarm", SWARM))
        else:
            o = start(stack, peers=maddrs(a), authorized=False)
        before = refusals(a) + refusals(b)
        results = [attack(o, a, "swarm-secret-record", "planted-a"), attack(o, b, "swarm-secret-record", "planted-b")]
        assert [r["attempts"] for r in results] == [3 * ROUNDS] * 2
        assert [r["ping"] + r["answered_find"] + r["read"] + r["store"] for r in results] == [0, 0]
        assert refusals(a) + refusals(b) - before >= 2 * 3 * ROUNDS  # every attempt was refused by a member
        assert o.get("swarm-secret-record", latest=True) is None  # the ordinary client API gets nothing either
        o.store("planted-c", "x", expires())
        for key in ("planted-a-0", "planted-b-0", "planted-c"):
            assert a.get(key, latest=True) is None and b.get(key, latest=True) is None
        back = attack(a, o, "planted-c", "reply-probe")  # a member ignores whatever the outsider answers
        assert back["ping"] + back["read"] + back["store"] == 0


def test_two_swarms_on_one_network_stay_apart(ids):
    other_id, other_secret = "0000000000000000", os.urandom(32)
    x = listed(ids, "ana", "bruno")
    y = ms.add_member(ms.new_membership(other_id, ids["carla"].signer, "c", 1.0), ids["mallory"].peer_id, "m",
                      ids["carla"].signer, 2.0)
    with contextlib.ExitStack() as stack:
        a = start(stack, ids["ana"], membership=x)
        b = start(stack, ids["bruno"], membership=x, peers=maddrs(a))
        c = start(stack, ids["carla"], secret=other_secret, membership=y, swarm=other_id, peers=maddrs(a))  # a mistake
        d = start(stack, ids["mallory"], secret=other_secret, membership=y, swarm=other_id, peers=maddrs(c))
        assert a.store("x-record", "x", expires()) and c.store("y-record", "y", expires())
        assert b.get("x-record", latest=True).value == "x" and d.get("y-record", latest=True).value == "y"
        assert [n.get("y-record", latest=True) for n in (a, b)] == [None, None]
        assert [n.get("x-record", latest=True) for n in (c, d)] == [None, None]


@pytest.mark.parametrize("how", ["revoke command writes the store", "push to the running DHT"])
def test_revoked_member_is_shut_out(ids, potluck_home, no_keyring, how):
    store = SwarmStore()
    info, _ = store.create_swarm("s", "m", "", creator=ids["ana"].signer, creator_name="Ana")
    secret = store.secret(info.swarm_id)
    members = store.save_membership(info.swarm_id, ms.add_member(
        store.membership(info.swarm_id), ids["bruno"].peer_id, "Bruno", ids["ana"].signer, time.time()))
    source = ad.StoreMembership(info.swarm_id, str(store.path)) if how.startswith("revoke") else members
    with contextlib.ExitStack() as stack:
        a = start(stack, ids["ana"], secret, source, swarm=info.swarm_id, membership_refresh_seconds=0.2)
        b = start(stack, ids["bruno"], secret, members, maddrs(a), swarm=info.swarm_id)
        assert attack(b, a, "anything", "before")["store"] == ROUNDS  # a member may store
        revoked = ms.revoke_member(members, ids["bruno"].peer_id, ids["ana"].signer, time.time())
        if how.startswith("revoke"):
            store.save_membership(info.swarm_id, revoked)  # what `potluck revoke` does, in another process
            time.sleep(0.5)  # more than the refresh period
        else:
            ad.push_membership(a, revoked)
        after = attack(b, a, "before-0", "after")
        assert after["attempts"] == 3 * ROUNDS and after["ping"] + after["read"] + after["store"] == 0
        assert authorizer_stats(a)["revoked"] >= 3 * ROUNDS
        b.store("bruno-only", "stale", expires())  # lands on bruno's own node only
        assert a.get("bruno-only", latest=True) is None  # ana drops the revoked peer's answers


async def _replay(target: str, request: bytes, dht, node) -> dict:
    """Runs inside the replayer's DHT process: send a request signed by someone else, as it is, to `target`."""
    from hivemind.dht.protocol import DHTProtocol
    from hivemind.proto import dht_pb2

    stub = super(DHTProtocol, DHTProtocol).get_stub(node.p2p, PeerID.from_base58(target))  # no signing of our own
    try:
        response = await stub.rpc_find(dht_pb2.FindRequest.FromString(request), timeout=5)
    except Exception as e:  # the member refused to answer
        return {"answered": False, "error": type(e).__name__}
    return {"answered": True, "values": sum(1 for r in response.results if r.value)}


@pytest.mark.parametrize("replayer", ["outsider", "member"])
def test_a_members_signed_request_cannot_be_replayed_to_another_node(ids, replayer):
    """Finding 9: whoever receives Bruno's signed request (an outsider he called, or another member) sends it on
    to Ana within the minute it is fresh. The token named Bruno, the connection is the replayer's: refused."""
    import asyncio

    from hivemind.dht.routing import DHTID as _DHTID
    from hivemind.proto import dht_pb2

    members = listed(ids, "ana", "bruno", "carla")
    with contextlib.ExitStack() as stack:
        a = start(stack, ids["ana"], membership=members)
        a.store("ana-private", "secret words", expires())
        if replayer == "member":
            r = start(stack, ids["carla"], membership=members, peers=maddrs(a))
        else:
            r = start(stack, peers=maddrs(a), authorized=False)
        bruno = ad.SwarmAuthorizer(SWARM, SECRET, ids["bruno"].key, members)
        request = dht_pb2.FindRequest(keys=[_DHTID.generate(source="ana-private").to_bytes()], peer=dht_pb2.NodeInfo())
        asyncio.run(bruno.sign_request(request, None))  # what Bruno sent to the replayer
        got = r.run_coroutine(functools.partial(_replay, str(a.peer_id), request.SerializeToString()))
        assert not got["answered"], got
        assert authorizer_stats(a).get("wrong_connection", 0) >= 1
        assert a.get("ana-private", latest=True).value == "secret words"  # Ana herself still works


SPAWNED = """
import multiprocessing, os, sys, time
from hivemind import DHT
from hivemind.p2p import P2P
from hivemind.utils.timed_storage import get_dht_time
from potluck.core.swarm import admission as ad, membership as ms
from potluck.core.swarm.signing import Signer


async def read_stats(dht, node):  # runs inside the DHT process
    return dict(node.protocol.authorizer.stats)


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)  # as on macOS and Windows: DHT arguments are pickled
    folder, swarm, secret = sys.argv[1], "5c0ffee15a1ad000", os.urandom(32)
    keys = []
    for name in "ab":
        P2P.generate_identity(os.path.join(folder, name))
        keys.append(ad.load_identity(os.path.join(folder, name)))
    pids = [ad.peer_id_of(k.get_public_key()) for k in keys]
    owner = Signer.from_identity(os.path.join(folder, "a"))
    m = ms.add_member(ms.new_membership(swarm, owner, "a", 1.0), pids[1], "b", owner, 2.0)
    a = b = None
    try:
        a = DHT(start=True, **ad.swarm_dht_kwargs(ad.SwarmAuthorizer(swarm, secret, keys[0], m),
                                                  os.path.join(folder, "a"), "127.0.0.1"))
        peers = [str(x) for x in a.get_visible_maddrs()]
        b = DHT(start=True, check_if_identity_free=False, **ad.swarm_dht_kwargs(
            ad.SwarmAuthorizer(swarm, secret, keys[1], m), os.path.join(folder, "b"), "127.0.0.1", 0, peers))
        a.store("k", "spawned", get_dht_time() + 60)
        print("GOT", b.get("k", latest=True).value, a.run_coroutine(read_stats).get("accepted", 0) > 0)
    finally:
        for dht in (a, b):
            if dht is not None:
                dht.shutdown()
"""


def test_authorized_dht_runs_in_a_spawned_process(tmp_path):
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=root, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    assert "GOT spawned True" in out.stdout, out.stdout + out.stderr[-3000:]
