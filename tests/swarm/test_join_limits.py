"""Issue 13, findings 2 and 5, at the inviter's node: revoking a member cancels the invite codes it used or made
(here, and on any node the revocation reaches), and idle streams of outsiders never make a friend's join "busy"."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time

import pytest

from potluck.core.swarm import lifecycle, secure
from potluck.core.swarm import membership as ms
from potluck.core.swarm.codec import b58encode
from potluck.core.swarm.join import MAX_CONCURRENT_JOINS, MAX_PENDING_PER_PEER, JoinRequest
from potluck.core.swarm.services import MembershipSync
from potluck.core.wire import framing

from .test_join import REACH_BACK, _Info, _known_ids, _Writer, ask, inviter, refused  # noqa: F401  (fixtures)

BOOT = ("/ip4/127.0.0.1/tcp/4000/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",)


def outsider(i: int) -> str:
    return b58encode(b"\x12\x20" + hashlib.sha256(f"outsider {i}".encode()).digest())


def test_revoking_a_member_cancels_the_multi_use_code_it_joined_with(ids, inviter):
    """Finding 2: Dave joined with a multi-use code; after his revocation a fresh identity of his (Mallory's key
    here) used the same code and got the secret again."""
    store, node, service, _ = inviter
    secure.identity_path(node.swarm_id).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ids["ana"].path, secure.identity_path(node.swarm_id))  # Ana's PC, as the CLI and the app find it
    invite = store.create_invite(node.swarm_id, BOOT, max_uses=None, created_by=node.peer_id)
    spare = store.create_invite(node.swarm_id, BOOT, max_uses=None, created_by=node.peer_id)
    ask(service, ids["carla"].peer_id, invite)  # Dave joins
    lifecycle.revoke_member(node.swarm_id, ids["carla"].peer_id, store=store)  # `potluck revoke`, the app's button
    again = refused(service, ids["mallory"].peer_id, invite)  # a fresh identity with the same code
    assert again.code == "cancelled", str(again)
    assert ms.is_active_member(store.membership(node.swarm_id), ids["bruno"].peer_id) is False
    assert ask(service, ids["bruno"].peer_id, spare).swarm_id == node.swarm_id  # other codes still work


def test_a_revocation_that_arrives_from_another_pc_cancels_codes_here(ids, inviter):
    """Bruno (an admin) revokes Dave on his PC; Ana's node merges Bruno's list and cancels the codes here that
    Dave used, and those Dave's identity made on this PC."""
    store, node, service, _ = inviter
    invite = store.create_invite(node.swarm_id, BOOT, max_uses=None, created_by=node.peer_id)
    ask(service, ids["bruno"].peer_id, invite)
    ask(service, ids["carla"].peer_id, invite)
    with secure.store_lock(store):
        m = ms.set_role(store.membership(node.swarm_id), ids["bruno"].peer_id, ms.Role.ADMIN, ids["ana"].signer, 10.0)
        store.save_membership(node.swarm_id, m)
    made_by_dave = store.create_invite(node.swarm_id, BOOT, max_uses=None, created_by=ids["carla"].peer_id)
    brunos = ms.revoke_member(store.membership(node.swarm_id), ids["carla"].peer_id, ids["bruno"].signer, time.time())
    sync = MembershipSync(node, None, [])
    assert sync._merge([(ids["bruno"].peer_id, brunos, [])])
    revocation = store.membership(node.swarm_id).get(ids["carla"].peer_id).revocation
    assert revocation.by == ids["bruno"].peer_id and revocation.confirm  # the owner's node countersigned it
    assert {r.invite_id: r.cancelled for r in store.get(node.swarm_id).invites} == {
        invite.invite_id: True, made_by_dave.invite_id: True}
    assert refused(service, ids["mallory"].peer_id, invite).code == "cancelled"


def _frame(request: JoinRequest) -> bytes:
    body = framing.json_frame(request.to_message())
    return len(body).to_bytes(framing.HEADER_LEN, "big") + body


def test_idle_streams_of_outsiders_never_make_a_join_busy(ids, inviter):
    """Finding 5: four idle streams from an outsider made every join "busy" for 10 s each. Now a peer may hold
    MAX_PENDING_PER_PEER streams that sent nothing yet (more are closed at once), and only joins whose code
    checked out take one of the MAX_CONCURRENT_JOINS slots."""
    store, node, service, _ = inviter
    invite = store.create_invite(node.swarm_id, BOOT)

    async def go():
        idle = []  # (reader, writer, task): outsiders who opened the join stream and send nothing
        for i in range(MAX_CONCURRENT_JOINS + 2):
            for _ in range(MAX_PENDING_PER_PEER):
                reader, writer = asyncio.StreamReader(), _Writer()
                idle.append((reader, writer, asyncio.create_task(service.handle(_Info(outsider(i)), reader, writer))))
        extra_reader, extra_writer = asyncio.StreamReader(), _Writer()
        await asyncio.wait_for(service.handle(_Info(outsider(0)), extra_reader, extra_writer), 1.0)
        assert extra_writer.closed and not extra_writer.data  # one stream too many for that peer: closed at once
        await asyncio.sleep(0.05)
        reader, writer = asyncio.StreamReader(), _Writer()
        reader.feed_data(_frame(JoinRequest(invite.swarm_id, invite.invite_id, invite.credential, "Bruno", REACH_BACK,
                                            ids["bruno"].signer.public_key)))
        reader.feed_eof()
        began = time.monotonic()
        await asyncio.wait_for(service.handle(_Info(ids["bruno"].peer_id), reader, writer), 5.0)
        elapsed = time.monotonic() - began
        for r, _, task in idle:
            r.feed_eof()
            await asyncio.wait_for(task, 5.0)
        return framing.parse_json_frame(bytes(writer.data[framing.HEADER_LEN:])), elapsed

    reply, elapsed = asyncio.run(go())
    assert reply["op"] == "welcome", reply
    assert elapsed < 2.0 and service.stats["too_many_streams"] == 1 and service.stats["busy"] == 0
    assert ms.is_active_member(store.membership(node.swarm_id), ids["bruno"].peer_id)


def test_a_join_slot_is_taken_only_after_the_code_checks_out(ids, inviter):
    store, node, service, reached = inviter
    invite = store.create_invite(node.swarm_id, BOOT)
    service._active = MAX_CONCURRENT_JOINS  # every slot busy probing other joiners
    assert refused(service, ids["bruno"].peer_id, invite, credential=bytes(16)).code == "invalid"  # checked first
    assert refused(service, ids["bruno"].peer_id, invite).code == "busy"
    service._active = 0
    assert ask(service, ids["bruno"].peer_id, invite).swarm_id == node.swarm_id


@pytest.mark.parametrize("policy, inviter_role, ok", [
    (ms.InvitePolicy.MEMBERS, ms.Role.MEMBER, True), (ms.InvitePolicy.ADMINS, ms.Role.MEMBER, False),
    (ms.InvitePolicy.ADMINS, ms.Role.ADMIN, True),
])
def test_who_may_admit_follows_the_swarms_setting(ids, potluck_home, no_keyring, policy, inviter_role, ok):
    """Bruno's node answers a join with a code Bruno made: whether it may admit depends on the setting and role."""
    from pathlib import Path

    from potluck.core.swarm.join import JoinService
    from potluck.core.swarm.store import SwarmStore

    store = SwarmStore()
    info, _ = store.create_swarm("club", "org/model", "", creator=ids["ana"].signer, creator_name="Ana")
    m = ms.add_member(store.membership(info.swarm_id), ids["bruno"].peer_id, "Bruno", ids["ana"].signer, 5.0,
                      key=ids["bruno"].signer.public_key)
    if inviter_role is ms.Role.ADMIN:
        m = ms.set_role(m, ids["bruno"].peer_id, ms.Role.ADMIN, ids["ana"].signer, 6.0)
    store.save_membership(info.swarm_id, ms.set_invite_policy(m, policy, ids["ana"].signer, 7.0))
    node = secure.SwarmNode(store.get(info.swarm_id), Path(ids["bruno"].path), ids["bruno"].peer_id, store)

    async def reachable(addrs):
        return list(addrs)

    service = JoinService(node, lambda: list(BOOT), probe=reachable)
    invite = store.create_invite(info.swarm_id, BOOT, created_by=node.peer_id)
    if ok:
        assert ask(service, ids["carla"].peer_id, invite).swarm_id == info.swarm_id
        assert store.membership(info.swarm_id).get(ids["carla"].peer_id).added_by == ids["bruno"].peer_id
    else:
        error = refused(service, ids["carla"].peer_id, invite)
        assert error.code == "not_allowed" and "only the owner and admins may invite" in str(error)
