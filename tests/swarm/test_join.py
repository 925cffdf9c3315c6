"""The join handshake and the swarm commands: the inviter's decisions table by table (no network), the pieces
around them, and the whole invite create -> show -> join round trip with real `potluck` processes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from potluck.core.swarm import membership as ms
from potluck.core.swarm import reachability, tailscale
from potluck.core.swarm.invite import decode_invite, encode_invite
from potluck.core.swarm.join import JoinError, JoinRequest, JoinService, Welcome
from potluck.core.swarm.secure import MemberCheck, SwarmNode, store_lock
from potluck.core.swarm.services import merge_offers
from potluck.core.swarm.store import SwarmStore

REACH_BACK = ("/ip4/127.0.0.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",)


# ---- the inviter's decisions ------------------------------------------------------------------------------------------
@pytest.fixture
def inviter(ids, potluck_home, no_keyring):
    store = SwarmStore()
    info, _ = store.create_swarm("club", "org/model", "", creator=ids["ana"].signer, creator_name="Ana")
    node = SwarmNode(info, Path(ids["ana"].path), ids["ana"].peer_id, store)
    reached: list = [True]
    probe = lambda addrs: _async(list(addrs) if reached[0] else [])  # noqa: E731
    service = JoinService(node, lambda: ["/ip4/127.0.0.1/tcp/4000/p2p/" + ids["ana"].peer_id], probe=probe)
    return store, node, service, reached


def _async(value):
    async def done():
        return value
    return done()


def ask(service, peer_id, invite, *, credential=None, invite_id=None, key=None) -> Welcome:
    from potluck.core.swarm.signing import peer_id_of_key

    key = key if key is not None else next((i.signer.public_key for i in _IDS.values() if i.peer_id == peer_id), "")
    assert not key or peer_id_of_key(key) == peer_id
    request = JoinRequest(invite.swarm_id, invite_id or invite.invite_id, credential or invite.credential, "Bruno",
                          REACH_BACK, key)
    return asyncio.run(service.decide(peer_id, request))


_IDS: dict = {}


@pytest.fixture(autouse=True)
def _known_ids(ids):
    _IDS.update(ids)


def refused(service, peer_id, invite, **kw) -> JoinError:
    with pytest.raises(JoinError) as e:
        ask(service, peer_id, invite, **kw)
    return e.value


def test_a_good_code_admits_once_and_hands_over_the_secret(ids, inviter):
    store, node, service, _ = inviter
    invite = store.create_invite(node.swarm_id, ("/ip4/127.0.0.1/tcp/4000/p2p/" + ids["ana"].peer_id,))
    welcome = ask(service, ids["bruno"].peer_id, invite)
    assert welcome.secret == node.secret() and welcome.swarm_name == "club" and welcome.bootstrap
    wire = json.loads(json.dumps(welcome.to_message()))  # what travels is plain JSON
    got, membership = Welcome.from_message(wire, invite, ids["bruno"].peer_id)
    assert got.secret == node.secret() and ms.is_active_member(membership, ids["bruno"].peer_id)
    bruno = membership.get(ids["bruno"].peer_id)
    assert (bruno.added_by, bruno.invite_id, bruno.key) == (ids["ana"].peer_id, invite.invite_id,
                                                            ids["bruno"].signer.public_key)
    assert store.get(node.swarm_id).invites[0].uses_left == 0
    assert store.get(node.swarm_id).invites[0].redeemed_by == (ids["bruno"].peer_id,)
    again = ask(service, ids["bruno"].peer_id, invite)  # the welcome was lost: the same PC asks again
    assert again.secret == node.secret() and service.stats["welcomed_again"] == 1
    error = refused(service, ids["carla"].peer_id, invite)  # someone else with the used code
    assert error.code == "used_up" and "already been used (1 of 1 joins)" in str(error)


@pytest.mark.parametrize("case,code,message", [
    ("unknown", "unknown", "not known here"),
    ("wrong credential", "invalid", "not valid"),
    ("expired", "expired", "has expired on"),
    ("cancelled", "cancelled", "cancelled"),
    ("no reach back", "no_reach_back", "could not connect back"),
    ("revoked", "revoked", "removed from the swarm"),
])
def test_refusals_say_why(ids, inviter, case, code, message):
    store, node, service, reached = inviter
    invite = store.create_invite(node.swarm_id, ("/ip4/127.0.0.1/tcp/4000/p2p/" + ids["ana"].peer_id,),
                                 expires_in_seconds=600, max_uses=None)
    kw = {}
    if case == "unknown":
        kw["invite_id"] = "0" * 12
    elif case == "wrong credential":
        kw["credential"] = bytes(16)
    elif case == "expired":
        service.clock = lambda: time.time() + 3600
    elif case == "cancelled":
        store.cancel_invite(invite.invite_id)
    elif case == "no reach back":
        reached[0] = False
    elif case == "revoked":
        ask(service, ids["mallory"].peer_id, invite)
        store.save_membership(node.swarm_id, ms.revoke_member(store.membership(node.swarm_id),
                                                              ids["mallory"].peer_id, ids["ana"].signer, time.time()))
    error = refused(service, ids["mallory"].peer_id, invite, **kw)
    assert error.code == code and message in str(error)
    if case != "revoked":
        assert not ms.is_active_member(store.membership(node.swarm_id), ids["mallory"].peer_id)
        assert store.get(node.swarm_id).invites[0].uses_left is None  # unlimited code, nothing consumed


@pytest.mark.parametrize("change,message", [
    ({"op": "hello"}, "expected a join request"),
    ({"version": 2}, "unsupported join version"),
    ({"swarm_id": "XYZ"}, "bad swarm_id"),
    ({"invite_id": "abc"}, "bad invite_id"),
    ({"credential": "00" * 15}, "bad credential"),
    ({"credential": 7}, "bad credential"),
    ({"name": "x" * 65}, "64 printable"),
    ({"name": "bell\x07"}, "64 printable"),
    ({"reach_back": []}, "1 to 8"),
    ({"reach_back": ["/dns/example.com/tcp/1"]}, "not an /ip4"),
    ({"reach_back": ["/ip4/1.2.3.4/tcp/99999"]}, "bad port"),
])
def test_malformed_requests_are_refused(change, message):
    good = JoinRequest("0123456789abcdef", "0123456789ab", bytes(16), "Bruno", REACH_BACK).to_message()
    assert JoinRequest.from_message(good).name == "Bruno"
    with pytest.raises(JoinError) as e:
        JoinRequest.from_message({**good, **change})
    assert e.value.code == "bad_request" and message in str(e.value)


def test_a_welcome_is_checked(ids, inviter):
    store, node, service, _ = inviter
    invite = store.create_invite(node.swarm_id, ("/ip4/127.0.0.1/tcp/4000/p2p/" + ids["ana"].peer_id,))
    good = ask(service, ids["bruno"].peer_id, invite).to_message()
    tampered = json.loads(json.dumps(good))
    tampered["membership"]["members"][0]["admission"]["name"] = "Eve"
    for message, who, expected in ((tampered, "bruno", "does not check out"), ({**good, "swarm_id": "0" * 16}, "bruno",
                                   "another swarm"), (good, "carla", "not on the member list"),
                                   ({**good, "secret": "!!"}, "bruno", "secret"),
                                   ({**good, "epoch": 2, "proof": "bm90IGEgcHJvb2Y="}, "bruno", "proof")):
        with pytest.raises(JoinError, match=expected):
            Welcome.from_message(message, invite, ids[who].peer_id)


class _Writer:
    def __init__(self):
        self.data, self.closed = bytearray(), False

    def write(self, b):
        self.data += b

    async def drain(self):
        pass

    def close(self):
        self.closed = True


class _Info:
    def __init__(self, peer_id):
        from hivemind.p2p import PeerID

        self.peer_id = PeerID.from_base58(peer_id)


def answer(service, peer_id, raw: bytes, *, busy=False) -> dict:
    """What the join handler answers to the bytes `raw` (a stream the joiner then closes)."""
    from potluck.core.wire import framing

    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        writer = _Writer()
        service._active = 4 if busy else 0
        await service.handle(_Info(peer_id), reader, writer)
        assert writer.closed
        return framing.parse_json_frame(bytes(writer.data[framing.HEADER_LEN:])) if writer.data else None

    return asyncio.run(go())


def test_the_handler_answers_every_stream_in_json(ids, inviter):
    from potluck.core.wire import framing

    store, node, service, _ = inviter
    invite = store.create_invite(node.swarm_id, ("/ip4/127.0.0.1/tcp/4000/p2p/" + ids["ana"].peer_id,))
    frame = lambda body: len(body).to_bytes(framing.HEADER_LEN, "big") + body  # noqa: E731
    good = framing.json_frame(JoinRequest(invite.swarm_id, invite.invite_id, invite.credential, "Bruno",
                                        REACH_BACK).to_message())
    assert answer(service, ids["bruno"].peer_id, frame(good), busy=True)["code"] == "busy"
    assert answer(service, ids["bruno"].peer_id, frame(b"J{not json"))["code"] == "bad_request"
    assert answer(service, ids["bruno"].peer_id, frame(b"\x80pickle"))["message"] == "expected a JSON message"
    huge = answer(service, ids["bruno"].peer_id, (10**6).to_bytes(framing.HEADER_LEN, "big"))
    assert huge["code"] == "bad_request" and "exceeds" in huge["message"]  # refused before it is read
    assert answer(service, ids["bruno"].peer_id, b"") is None  # nothing sent: nothing answered
    welcome = answer(service, ids["bruno"].peer_id, frame(good))
    assert welcome["op"] == "welcome" and welcome["swarm_id"] == node.swarm_id
    assert service.stats["welcomed"] == 1 and service.stats["bad_request"] == 4 and service.stats["busy"] == 1


# ---- the pieces around it -----------------------------------------------------------------------------------------------
def test_merge_offers_takes_lists_from_active_members_only(ids):
    a, b, c, m = (ids[n].peer_id for n in ("ana", "bruno", "carla", "mallory"))
    sa, sb, sc = (ids[n].signer for n in ("ana", "bruno", "carla"))
    base = ms.add_member(ms.new_membership("0123456789abcdef", sa, "A", 1.0), b, "B", sa, 2.0, key=sb.public_key)
    with_carla = ms.add_member(base, c, "C", sa, 3.0, key=sc.public_key)
    carla_adds_mallory = ms.add_member(with_carla, m, "M", sc, 4.0)
    revoking_b = ms.revoke_member(base, b, sa, 5.0)
    # Carla's list is only accepted once Ana's list (which names Carla) is in: order does not matter
    merged = merge_offers(base, [(c, carla_adds_mallory), (a, with_carla)])
    assert ms.is_active_member(merged, m)
    assert not ms.is_active_member(merge_offers(base, [(c, carla_adds_mallory)]), m)  # Carla unknown yet
    after = merge_offers(base, [(a, revoking_b)])
    assert not ms.is_active_member(after, b)
    assert merge_offers(after, [(b, ms.add_member(base, m, "M", sb, 6.0))]) == after  # a revoked sender is ignored
    other = ms.new_membership("fedcba9876543210", ids["mallory"].signer, "M", 1.0)
    assert merge_offers(base, [(a, other)]) == base  # another swarm's list


def test_member_check_follows_the_store(ids, potluck_home, no_keyring):
    store = SwarmStore()
    info, _ = store.create_swarm("s", "m", "", creator=ids["ana"].signer)
    store.save_membership(info.swarm_id, ms.add_member(store.membership(info.swarm_id), ids["bruno"].peer_id, "B",
                                                       ids["ana"].signer, 1.0))
    admit = MemberCheck(info.swarm_id, store, refresh_seconds=0.2)
    assert admit(ids["bruno"].peer_id) and not admit(ids["mallory"].peer_id)
    store.save_membership(info.swarm_id, ms.revoke_member(store.membership(info.swarm_id), ids["bruno"].peer_id,
                                                          ids["ana"].signer, 2.0))
    time.sleep(0.25)
    assert not admit(ids["bruno"].peer_id) and admit.refused == 2
    assert not MemberCheck("0" * 16, store)(ids["ana"].peer_id)  # no such swarm: no one


def test_owner_subkeys(ids):
    from potluck.core.swarm.dht import subkey_owner

    marker = "[owner:" + ids["ana"].key.get_public_key().to_bytes().decode() + "]"
    assert subkey_owner(ids["ana"].peer_id + marker, signed=True) == ids["ana"].peer_id
    assert subkey_owner(ids["bruno"].peer_id + marker, signed=True) is None  # claims Bruno, signed by Ana
    assert subkey_owner(ids["ana"].peer_id, signed=True) is None  # unsigned in a private swarm
    assert subkey_owner(ids["ana"].peer_id, signed=False) == ids["ana"].peer_id
    assert subkey_owner(b"bytes", signed=False) is None


def test_reachability_probes_and_advice():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        alive = f"/ip4/127.0.0.1/tcp/{port}/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = f"/ip4/127.0.0.1/tcp/{closed.getsockname()[1]}"
            assert asyncio.run(reachability.reachable([alive, dead, "/garbage"])) == [alive]
    assert reachability.host_port("/ip4/100.101.1.1/tcp/4001/p2p/x") == ("100.101.1.1", 4001)
    maddr = "/ip4/100.101.1.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    back = reachability.explain(maddr, True, False, sharing=tailscale.Sharing.SHARED_IN)
    assert back.verdict == "one_way_out" and "node sharing" in back.message and "100.101.1.1" in back.message
    out = reachability.explain(maddr, False, False, sharing=tailscale.Sharing.SHAREE)
    assert out.verdict == "unreachable" and "shared with 100.101.1.1's owner" in out.message
    assert reachability.sharing_with(maddr, runner=_no_tailscale) is None


def _no_tailscale(argv, timeout):
    raise FileNotFoundError(argv[0])


def test_join_help_says_stdin_is_safer(capsys):
    from potluck.core.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["join", "--help"])
    assert "safer" in capsys.readouterr().out


# ---- the real thing: potluck processes on loopback ------------------------------------------------------------------------
POTLUCK = [sys.executable, "-m", "potluck.app.entry"]
ROOT = Path(__file__).resolve().parents[2]


def env_for(home: Path) -> dict:
    return {**os.environ, "POTLUCK_HOME": str(home), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONUNBUFFERED": "1", "GOMP_SPINCOUNT": "10000"}


def potluck(home: Path, *args, stdin: str | None = None, timeout: float = 120, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *POTLUCK, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env_for(home), cwd=ROOT)


class Node:
    """A long-running `potluck serve`/`join` process; its output is kept, "ready" awaited."""

    def __init__(self, home: Path, *args, stdin: str | None = None, prefix=()):
        self.args = [*prefix, *POTLUCK, *args]
        self.process = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env_for(home), cwd=ROOT,
                                        start_new_session=True)
        if stdin is not None:
            self.process.stdin.write(stdin)
        self.process.stdin.close()
        self.lines: deque[str] = deque(maxlen=300)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                self.ready.set()

    def wait_ready(self, timeout: float = 120) -> "Node":
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{' '.join(self.args[-6:])} did not get ready:\n" + self.output)
        return self

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def maddrs(self) -> list[str]:
        return [line.split()[1] for line in self.lines if line.startswith("multiaddr ")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.mark.slow
def test_invite_show_join_round_trip_with_potluck_processes(tmp_path, tiny_model):
    ana, bruno, carla = tmp_path / "ana", tmp_path / "bruno", tmp_path / "carla"
    created = potluck(ana, "swarm", "create", "--name", "club", "--model", str(tiny_model), "--member-name", "Ana")
    assert created.returncode == 0, created.stderr
    assert "readable only by you" in created.stdout  # no keyring here: the CLI says where the secret went
    early = potluck(ana, "invite", "create")
    assert early.returncode == 2 and "start this PC's node" in early.stderr

    nodes = []
    try:
        nodes.append(Node(ana, "serve", "--swarm", "club", "--host", "127.0.0.1", "--blocks", "0:2",
                          "--membership-period", "1").wait_ready())
        made = potluck(ana, "invite", "create", "--expires", "1h", "--uses", "1", "--this-pc-only")
        assert made.returncode == 0, made.stderr
        code = made.stdout.strip()
        assert code.startswith("potluck-") and "\n" not in code and "for 1 join(s)" in made.stderr
        assert decode_invite(code).bootstrap == tuple(nodes[0].maddrs())

        shown = potluck(bruno, "invite", "show", "-", stdin=code + "\n")
        assert shown.returncode == 0 and "club" in shown.stdout and "valid until" in shown.stdout
        assert not (bruno / "config").exists()  # showing a code joins nothing

        nodes.append(Node(bruno, "join", "-", "--name", "Bruno", "--host", "127.0.0.1", "--blocks", "2:4",
                          "--membership-period", "1", stdin=code).wait_ready())
        assert "Joined swarm 'club'" in nodes[1].output and "readable only by you" in nodes[1].output
        listed = json.loads(potluck(ana, "members", "--json").stdout)
        assert [(m["name"], m["revoked"]) for m in listed["members"]] == [("Ana", False), ("Bruno", False)]

        again = potluck(carla, "join", "-", "--host", "127.0.0.1", "--no-serve", stdin=code)
        assert again.returncode == 2 and "already been used" in again.stderr, again.stderr

        store = SwarmStore(ana / "config" / "swarms.json")  # Ana's PC made a code a day ago that expired
        with store_lock(store):
            old = store.create_invite(listed["swarm_id"], tuple(nodes[0].maddrs()), expires_in_seconds=3600,
                                      now=time.time() - 86400)
        expired = potluck(carla, "join", "-", "--host", "127.0.0.1", "--no-serve", stdin=encode_invite(old))
        assert expired.returncode == 2 and "has expired on" in expired.stderr
        assert "expired on" in potluck(carla, "invite", "show", encode_invite(old)).stdout
        typo = potluck(carla, "join", "-", "--no-serve", stdin=code[:-3] + ("x" if code[-3] != "x" else "y") + code[-2:])
        assert typo.returncode == 2 and "typo" in typo.stderr

        revoked = potluck(ana, "revoke", "Bruno")
        assert revoked.returncode == 0 and "Revoked Bruno" in revoked.stdout
        after = json.loads(potluck(ana, "members", "--json").stdout)
        assert [m["revoked"] for m in after["members"]] == [False, True]
    finally:
        for node in reversed(nodes):
            node.stop()
    assert all(node.process.returncode == 0 for node in nodes), [n.output[-2000:] for n in nodes]
    assert not list((ana / "data" / "run").glob("*.node.json"))  # the node file goes with the node


def test_identities_are_what_hivemind_and_p2pd_expect(tmp_path):
    from hivemind.p2p import P2P, PeerID

    from potluck.core.swarm import admission, secure

    ours = tmp_path / "ours.key"
    peer_id = secure.create_identity(ours)
    assert oct(ours.stat().st_mode & 0o777) == "0o400"
    assert PeerID.from_identity(ours.read_bytes()).to_base58() == peer_id  # hivemind reads our file
    assert admission.peer_id_of(admission.load_identity(str(ours)).get_public_key()) == peer_id
    theirs = tmp_path / "theirs.key"
    P2P.generate_identity(str(theirs))
    assert secure.peer_id_of_identity(theirs) == PeerID.from_identity(theirs.read_bytes()).to_base58()
    assert secure.create_identity(ours) != peer_id  # replaced by a new one
