"""A private swarm on loopback, for real: members serve and generate exactly; outsiders with no code, a wrong code,
an expired code, or a revoked membership try to join the DHT, announce blocks, open sessions and push
activations, and every attempt is counted and refused; revocation spreads well within a minute; two swarms on
one network never see each other's servers.

Cast: Ana created the swarm (her PC uses POTLUCK_HOME, like the CLI) and serves blocks 0-1; Bruno joined with a
code and serves 2-3; Carla joined and only generates; Dave joined and serves 0-1 too, until Ana revokes him.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import keyring
import pytest
from hivemind.p2p import P2P

from potluck.core.client.loop_thread import LoopThread
from potluck.core.client.model import DistributedModelForCausalLM
from potluck.core.model.loading import open_model
from potluck.core.swarm import dht as swarm_dht
from potluck.core.swarm.join import JoinError, request_join

from ..engine.test_exactness import reference
from .attacks import HeldSession, Tally, attack, outsider_dht, try_push, try_session
from .conftest import FileKeyring
from .members import PERIOD, Member, authorizer_stats, token_refusal

pytestmark = pytest.mark.slow
PROMPT = [5, 17, 33, 2, 40, 99, 120, 7]
NEW_TOKENS = 6
REVOCATION_LIMIT_SECONDS = 60.0


@dataclass
class World:
    root: object
    loop: LoopThread
    model_dir: str
    spec: object
    swarm_id: str
    ana: Member
    bruno: Member
    carla: Member
    dave: Member
    invites: dict

    @property
    def servers(self) -> list[Member]:
        return [self.ana, self.bruno, self.dave]

    def targets(self, members=None) -> list[tuple[str, list[str], int, int]]:
        return [(m.peer_id, m.maddrs, m.server.stack.start, m.server.stack.end) for m in (members or self.servers)]

    def seen_by(self, member: Member) -> set[str]:
        """Peer ids of the servers `member` would route to."""
        by_block = self.loop.run(swarm_dht.fetch_records(member.dht, self.spec.uid, range(self.spec.num_blocks)))
        return {r.peer_id for records in by_block.values() for r in records}

    def call(self, dht):
        replica = self.loop.run(dht.replicate_p2p(), timeout=30)
        return lambda fn: self.loop.run(fn(replica), timeout=30)


def wait_until(condition, timeout: float, what: str, state=None) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}" + (f"; state: {state()}" if state else ""))
        time.sleep(0.2)
    return time.monotonic() - began


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("private")
    saved_home, saved_keyring = os.environ.get("POTLUCK_HOME"), keyring.get_keyring()
    os.environ["POTLUCK_HOME"] = str(root / "ana-home")
    keyring.set_keyring(FileKeyring(root / "keyring.json"))
    loop, members = LoopThread(), []
    try:
        model_dir = str(tiny_model)
        spec = open_model(model_dir)
        ana = Member("Ana", root / "ana", loop, home=True)
        members.append(ana)
        swarm_id = ana.create_swarm("club", model_dir)
        ana.start(swarm_id, blocks=(0, 2), spec=spec)
        cast, invites = {}, {}
        for name, role in (("Bruno", dict(blocks=(2, 4), spec=spec)), ("Carla", dict(client_mode=True)),
                           ("Dave", dict(blocks=(0, 2), spec=spec))):
            member = Member(name, root / name.lower(), loop)
            members.append(member)
            invites[name.lower()] = ana.invite()
            member.join(invites[name.lower()])
            cast[name.lower()] = member.start(swarm_id, **role)
        w = World(root, loop, model_dir, spec, swarm_id, ana, **cast, invites=invites)
        everyone = [ana, *cast.values()]
        wait_until(lambda: all(m.admit(x.peer_id) for m in everyone for x in everyone), 30, "members know each other")
        wait_until(lambda: w.seen_by(w.carla) == {m.peer_id for m in w.servers}, 30, "Carla sees all three servers")
        yield w
    finally:
        for member in reversed(members):
            member.stop()
        loop.stop()
        keyring.set_keyring(saved_keyring)
        if saved_home is None:
            os.environ.pop("POTLUCK_HOME", None)
        else:
            os.environ["POTLUCK_HOME"] = saved_home


def test_members_serve_and_generate_exactly(world):
    expected, _ = reference(world.model_dir, PROMPT, NEW_TOKENS)
    client = DistributedModelForCausalLM.from_pretrained(world.model_dir, dht=world.carla.dht, timeout=10)
    try:
        result = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, eos_token_id=None)
    finally:
        client.shutdown()
    assert result.token_ids == expected
    assert {hop.peer_id for hop in result.route} <= {m.peer_id for m in world.servers}
    assert result.route[-1].peer_id == world.bruno.peer_id  # blocks 2-3 exist only on Bruno's PC


def outsider_attempts(world, dht, peer_id, marker_value: str) -> Tally:
    marker = f"marker-{os.urandom(4).hex()}"
    assert world.ana.dht.store(marker, marker_value, swarm_dht.now() + 60)  # stored after the outsider started
    return attack(dht, world.call(dht), world.targets(), world.spec.uid, world.spec.num_blocks,
                  world.spec.hidden_size, marker, peer_id)


def test_outsiders_with_no_wrong_or_expired_code_get_nothing(world, tmp_path):
    ana = world.ana
    refused_before = sum(m.server.stats.refused for m in world.servers)
    tally, handshakes = Tally(), []
    invite = ana.invite()
    wrong = type(invite)(**{**invite.__dict__, "credential": bytes(16)})  # a made-up code for the real swarm
    expired = ana.invite(expires_in_seconds=60, now=time.time() - 3600)
    for code, expected in ((wrong, "unknown"), (expired, "expired")):  # a made-up credential names no invite
        identity = tmp_path / f"{expected}.key"
        P2P.generate_identity(str(identity))
        with pytest.raises(JoinError) as refused:
            world.loop.run(request_join(code, identity, "127.0.0.1", "outsider"), timeout=60)
        handshakes.append(refused.value.code)
        assert refused.value.code == expected, str(refused.value)
    assert "expired on" in str(refused.value)
    outsiders = {"no code": "plain", "wrong code": "guess", "expired code": "guess"}
    peers = []
    for who, mode in outsiders.items():
        dht, peer_id = outsider_dht(mode, "127.0.0.1", ana.maddrs, world.swarm_id, str(tmp_path))
        peers.append(peer_id)
        try:
            tally.merge(outsider_attempts(world, dht, peer_id, who))
        finally:
            dht.shutdown()
    time.sleep(1.0)
    for member in (world.ana, world.bruno, world.carla):
        assert not world.seen_by(member) & set(peers), "an outsider's announcement reached a member"
    per_outsider = 2 + 2 * len(world.servers)  # join, announce, and a session and a push per server
    assert sum(tally.attempts.values()) == len(outsiders) * per_outsider
    assert sum(tally.successes.values()) == 0, tally
    assert tally.refusals["not_a_member"] == len(outsiders) * 2 * len(world.servers), tally  # refused before any work
    assert sum(m.server.stats.refused for m in world.servers) - refused_before >= tally.refusals["not_a_member"]
    print(f"outsiders: {sum(tally.attempts.values())} attempts + {len(handshakes)} joins, 0 succeeded")


def test_two_swarms_side_by_side_stay_apart(world, tmp_path):
    erin, gina = Member("Erin", tmp_path / "erin", world.loop), Member("Gina", tmp_path / "gina", world.loop)
    try:
        other = erin.create_swarm("other club", world.model_dir)  # same model, so the same DHT keys
        erin.start(other, blocks=(0, 4), spec=world.spec, peers=tuple(world.ana.maddrs))  # pointed at Ana by mistake
        gina.join(erin.invite())
        gina.start(other, client_mode=True)
        wait_until(lambda: world.seen_by(gina) == {erin.peer_id}, 30, "Gina sees Erin's server")
        time.sleep(2 * PERIOD)
        assert world.seen_by(gina) == {erin.peer_id}
        assert erin.peer_id not in world.seen_by(world.carla) | world.seen_by(world.ana)
        assert world.ana.dht.get("potluck.members", latest=True).value.keys().isdisjoint(
            gina.dht.get("potluck.members", latest=True).value.keys())
        ok, code = world.call(gina.dht)(lambda p: try_session(p, world.ana.peer_id, world.ana.maddrs, world.spec.uid, 0, 1))
        assert (ok, code) == (False, "not_a_member")
        ok, code = world.call(world.carla.dht)(lambda p: try_session(p, erin.peer_id, erin.maddrs, world.spec.uid, 0, 1))
        assert (ok, code) == (False, "not_a_member")
    finally:
        gina.stop()
        erin.stop()


def test_revoked_member_is_shut_out_within_a_minute(world, capsys):
    from potluck.core.cli import members as member_commands

    dave, bruno = world.dave, world.bruno
    session = lambda who, target: world.call(who.dht)(  # noqa: E731
        lambda p: try_session(p, target.peer_id, target.maddrs, world.spec.uid, target.server.stack.start,
                              target.server.stack.end))
    assert session(dave, bruno) == (True, None)  # the control: a member is served
    assert dave.peer_id in world.seen_by(world.carla)
    held = HeldSession(world.call(dave.dht)(lambda p: _async(p)), bruno.peer_id, bruno.maddrs, world.spec.uid,
                       bruno.server.stack.start, bruno.server.stack.end, world.spec.hidden_size)
    world.loop.run(held.open(dave.peer_id), timeout=30)  # Dave holds a session and a push stream on Bruno's server
    assert world.loop.run(held.step(), timeout=30) is None and held.steps == 1

    began = time.monotonic()
    member_commands.revoke(argparse.Namespace(peer="Dave", swarm="club", host="127.0.0.1"))  # on Ana's PC
    assert "refuses it within seconds" in capsys.readouterr().out

    ended = None  # finding 1: the session opened before the revocation is not served on
    while ended is None and time.monotonic() - began < REVOCATION_LIMIT_SECONDS:
        ended = world.loop.run(held.step(), timeout=30)
        time.sleep(0.2)
    held_for = time.monotonic() - began
    held.close()
    assert ended is not None, f"Dave's open session was served {held.steps} steps, for {held_for:.0f} s"
    assert held_for < 2 * PERIOD + 10, f"his open session ended {held_for:.1f} s after the revocation ({ended})"
    print(f"Dave's open session and push stream ended {held_for:.1f} s after the revocation ({ended})")

    def shut_out() -> bool:
        return (not bruno.admit(dave.peer_id) and not world.carla.admit(dave.peer_id)
                and dave.peer_id not in world.seen_by(world.carla) | world.seen_by(bruno)
                and session(dave, bruno) == (False, "not_a_member") and session(dave, world.ana) == (False, "not_a_member"))

    wait_until(shut_out, REVOCATION_LIMIT_SECONDS, "the revocation reached every member")
    elapsed = time.monotonic() - began
    assert elapsed < REVOCATION_LIMIT_SECONDS
    print(f"revocation took effect everywhere after {elapsed:.1f} s")

    live = [world.ana, bruno]
    tally = attack(dave.dht, world.call(dave.dht), world.targets(live), world.spec.uid, world.spec.num_blocks,
                   world.spec.hidden_size, None, dave.peer_id)
    marker = f"after-revoke-{os.urandom(4).hex()}"
    assert world.ana.dht.store(marker, "fresh", swarm_dht.now() + 60)
    tally.add("join", dave.dht.get(marker, latest=True) is not None)
    push = world.call(dave.dht)(lambda p: try_push(p, bruno.peer_id, bruno.maddrs, world.spec.hidden_size))
    tally.add("push", *push)
    time.sleep(2 * 1.0)  # two of Dave's own announce periods: his server keeps trying
    for member in (world.ana, bruno, world.carla):
        assert dave.peer_id not in world.seen_by(member)
    assert authorizer_stats(world.ana.dht).get("revoked", 0) > 0  # his DHT requests are being refused
    fresh = world.root / "dave-again.key"
    P2P.generate_identity(str(fresh))
    with pytest.raises(JoinError) as again:  # his old code does not let him back in, even as a new identity
        world.loop.run(request_join(world.invites["dave"], fresh, "127.0.0.1", "Dave again"), timeout=60)
    assert again.value.code == "cancelled" and "cancelled" in str(again.value)  # revoking him cancelled it
    assert sum(tally.attempts.values()) == 2 + 2 * len(live) + 1
    assert sum(tally.successes.values()) == 0, tally
    print(f"revoked member: {sum(tally.attempts.values())} attempts, 0 succeeded")


async def _async(value):
    return value


def test_the_secret_rotates_after_a_revocation_and_reaches_a_member_who_was_offline(world, tmp_path):
    """Deliver item 3: Erin joins, Carla goes offline, Ana revokes Erin. Ana's node makes a new secret and hands it
    to Bruno at once; old-secret tokens stop working within a membership period; Carla, back online with the old
    secret, gets the new one from the first member she meets and sees the swarm again."""
    from potluck.core.swarm import admission as ad
    from potluck.core.swarm import lifecycle

    ana, bruno, carla = world.ana, world.bruno, world.carla
    erin = Member("Erin", tmp_path / "erin", world.loop)
    try:
        erin.join(ana.invite())
        erin.start(world.swarm_id, client_mode=True)
        state = lambda: {m.name: (m.store.get(world.swarm_id).secret_epoch, m.admit(erin.peer_id))  # noqa: E731
                         for m in (ana, bruno, carla)}
        wait_until(lambda: all(m.admit(erin.peer_id) for m in (ana, bruno, carla)), 60,
                   "everyone knows Erin (a shared machine can be slow)", state)
        wait_until(lambda: len({epoch for epoch, _ in state().values()}) == 1, 30, "everyone holds one secret", state)
        epoch = ana.store.get(world.swarm_id).secret_epoch
        old_secret = carla.store.secret(world.swarm_id)
        carla.stop()  # offline during the rotation

        began = time.monotonic()
        lifecycle.revoke_member(world.swarm_id, "Erin", store=ana.store)
        wait_until(lambda: bruno.store.get(world.swarm_id).secret_epoch == epoch + 1, 30, "Bruno got the new secret")
        rotated_in = time.monotonic() - began
        assert ana.store.secret(world.swarm_id) == bruno.store.secret(world.swarm_id) != old_secret
        time.sleep(2 * PERIOD)  # the grace for old tokens is one period
        member_with_old_secret = ad.SwarmAuthorizer(world.swarm_id, old_secret, ad.load_identity(str(bruno.identity)), None)
        old_token = world.loop.run(member_with_old_secret.get_token())
        assert token_refusal(ana.dht, old_token) == "bad_signature"  # old-secret tokens no longer work
        assert token_refusal(bruno.dht, old_token) == "bad_signature"

        carla.start(world.swarm_id, client_mode=True)  # back, still holding the old secret
        wait_until(lambda: carla.store.get(world.swarm_id).secret_epoch == epoch + 1, 30, "Carla got the new secret")
        caught_up_in = time.monotonic() - began
        wait_until(lambda: world.seen_by(carla) >= {ana.peer_id, bruno.peer_id}, 30, "Carla sees the servers again")
        assert erin.store.get(world.swarm_id).secret_epoch == epoch  # the revoked member is never told
        print(f"rotation: Bruno had secret {epoch + 1} {rotated_in:.1f} s after the revocation; Carla, offline then, "
              f"{caught_up_in:.1f} s after it (she was offline for part of that)")
    finally:
        erin.stop()
        if carla.dht is None:
            carla.start(world.swarm_id, client_mode=True)
