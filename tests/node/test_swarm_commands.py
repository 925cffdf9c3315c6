"""The swarm page's commands on two real nodes, as two friends' apps send them over the protocol: Ana's node makes a
code (refused while it names only 127.0.0.1, unless "this PC only"), Ben's node joins with the `join` command
(his "own copy" of the model is another model: refused in words until he picks the right one), both see each other, a bad code leaves Ben where he was, Ana revokes Ben and Ben's node is told and stops, Ben
joins again with a new code, and leaves."""

from __future__ import annotations

import time

import pytest

from potluck.core import protocol
from potluck.core.protocol import NodeState
from potluck.core.swarm.invite import decode_invite
from potluck.core.swarm.store import SwarmStore
from tests.node.node_driver import NodeUnderTest, potluck_cli
from tests.node.test_node_process import gui_values
from tests.node.test_private_swarm import start_node, stop_node


def answer(node: NodeUnderTest, kind, request_id: str, timeout: float = 120.0):
    return node.expect(f"{kind.__name__} for {request_id}", lambda e: isinstance(e, (kind, protocol.SwarmResult))
                       and getattr(e, "request_id", "") == request_id, timeout)


def invite(node: NodeUnderTest, request_id: str, **fields) -> protocol.InviteMade:
    node.send(protocol.InviteCreate(request_id=request_id, **fields))
    made = answer(node, protocol.InviteMade, request_id)
    assert isinstance(made, protocol.InviteMade), made
    return made


def view(node: NodeUnderTest, request_id: str, predicate=lambda v: True, timeout: float = 60.0) -> protocol.SwarmView:
    """Ask for the swarm view until it matches (a stats period apart)."""
    deadline = time.monotonic() + timeout
    while True:
        node.send(protocol.SwarmRefresh(request_id=request_id))
        seen = answer(node, protocol.SwarmView, request_id, 30)
        if predicate(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching swarm view within {timeout:g} s: {seen}")
        node.expect("the next stats", lambda e: isinstance(e, protocol.Stats), 10)


@pytest.mark.slow
def test_invite_join_see_revoke_told_rejoin_and_leave(tiny_model, tmp_path):
    ana_home, ben_home = tmp_path / "ana", tmp_path / "ben"
    ana = start_node(ana_home, gui_values(tiny_model, ana_home, mode="create", pc_name="Ana's desktop"))
    nodes = [ana]
    try:
        ana.state(NodeState.SERVING, timeout=180)
        (swarm,) = SwarmStore(ana_home / "config" / "swarms.json").list_swarms()
        assert "@" in swarm.model_revision  # a local model: the swarm recorded its identity for friends' copies

        ana.send(protocol.InviteCreate(request_id="loop"))
        refused = answer(ana, protocol.InviteMade, "loop")
        assert isinstance(refused, protocol.SwarmResult) and not refused.ok
        assert "127.0.0.1" in refused.message and "tailscale.com/download" in refused.message

        cli = ["invite", "create", "--swarm", "Friday night"]  # the command line refuses the same way
        refused_cli = potluck_cli(ana_home, *cli)
        assert refused_cli.returncode == 2 and "127.0.0.1" in refused_cli.stderr and "--this-pc-only" in refused_cli.stderr
        made_cli = potluck_cli(ana_home, *cli, "--this-pc-only")
        assert made_cli.returncode == 0 and decode_invite(made_cli.stdout.split()[-1]).bootstrap[0].startswith("/ip4/127.")

        made = invite(ana, "i1", this_pc_only=True, max_uses=1, expires_seconds=3600)
        assert made.this_pc_only and made.max_uses == 1 and made.code.startswith("potluck-")
        assert decode_invite(made.code).bootstrap == made.bootstrap and made.swarm_name == "Friday night"

        ben_values = gui_values(tiny_model, ben_home, mode="create", pc_name="Ben's mini PC", swarm_name="Ben's own")
        ben = start_node(ben_home, ben_values)
        nodes.append(ben)
        ben.state(NodeState.SERVING, timeout=180)

        ben.send(protocol.Join(request_id="bad", code=made.code[:-30]))
        bad = answer(ben, protocol.SwarmResult, "bad")
        assert not bad.ok and "code" in bad.message.lower()
        assert view(ben, "after-bad").name == "Ben's own"  # a bad code changes nothing

        from potluck.core.model.tiny import make_tiny_model

        other = str(make_tiny_model("llama", tmp_path / "other" / "tiny-llama", layers=2, hidden=64, seed=5))
        ben.send(protocol.Join(request_id="j1", code=made.code, model=other))  # Ben's "copy" is another model
        joined = answer(ben, protocol.SwarmResult, "j1", 180)
        assert joined.ok and joined.swarm_id == swarm.swarm_id, joined
        wrong = ben.expect("Ben's copy refused", lambda e: isinstance(e, protocol.State) and e.state is NodeState.FAILED,
                           180)
        assert wrong.detail.startswith("Your copy is not the swarm's model: the swarm runs tiny-llama@"), wrong.detail
        ben.send(protocol.SetConfig(values={"model": tiny_model}))  # the swarm page's "Use this copy"
        ben.send(protocol.Start())
        ben.state(NodeState.SERVING, timeout=180)
        both = view(ana, "both", lambda v: sum(m.online for m in v.members) == 2, 90)
        assert sorted((m.name, m.active, m.this_pc) for m in both.members) == [
            ("Ana's desktop", True, True), ("Ben's mini PC", True, False)]
        assert {m.role for m in both.members} <= {"owner", "admin", "member"} and both.created_here
        assert [i.uses_left for i in both.invites if i.invite_id == made.invite_id] == [0]  # its one join is used
        ben_view = view(ben, "ben-both", lambda v: len(v.members) == 2)
        assert ben_view.swarm_id == swarm.swarm_id and not ben_view.created_here
        assert {k.name for k in ben_view.known} == {"Friday night", "Ben's own"}

        ben.send(protocol.Join(request_id="used", code=made.code))  # the code's one use is spent
        used = answer(ben, protocol.SwarmResult, "used", 120)
        assert used.ok  # Ben is a member already: the same swarm simply opens again

        ben_peer = next(m.peer_id for m in both.members if not m.this_pc)
        ana.send(protocol.Revoke(request_id="r1", peer_id=ben_peer))
        revoked = answer(ana, protocol.SwarmResult, "r1")
        assert revoked.ok and "Ben's mini PC was removed" in revoked.message
        told = ben.expect("Ben's node told it was removed", lambda e: isinstance(e, protocol.State)
                          and e.state is NodeState.FAILED, 120)
        assert "removed from the swarm “Friday night”" in told.detail and "new invite code" in told.detail

        again = invite(ana, "i2", this_pc_only=True)
        ben.send(protocol.Join(request_id="j2", code=again.code))
        rejoined = answer(ben, protocol.SwarmResult, "j2", 180)
        assert rejoined.ok, rejoined
        ben.state(NodeState.SERVING, timeout=180)
        ben_back = view(ben, "ben-back", lambda v: not v.this_pc_removed and len(v.members) == 3)
        assert [m.active for m in ben_back.members].count(False) == 1  # the old identity stays revoked
        seen_before = len(ben.events)
        time.sleep(12)  # a few ticks later, Ben is still in and serving
        assert not view(ben, "ben-still").this_pc_removed
        assert not any(isinstance(e, protocol.State) and e.state is NodeState.FAILED for e in ben.events[seen_before:])

        ben.send(protocol.Leave(request_id="bye"))
        left = answer(ben, protocol.SwarmResult, "bye", 120)
        assert left.ok and left.swarm_id == ""
        assert [(e.state, e.detail) for e in ben.events if isinstance(e, protocol.State)][-1] == (
            NodeState.STOPPED, "Not in a swarm. Join one with a code, or start a new one.")
        gone = view(ben, "gone")
        assert gone.swarm_id == "" and [k.name for k in gone.known] == ["Ben's own"]
        stop_node(ben)
        stop_node(ana)
    finally:
        for node in nodes:
            node.kill()
