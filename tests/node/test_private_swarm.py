"""Two real nodes in a private swarm, as two friends' apps run them: Ana's node creates the swarm (mode "create"),
`potluck invite create` makes a code from its running node, Ben's node joins with it (mode "join", the code in
POTLUCK_INVITE_CODE), both serve, Ben chats through the swarm, and Ben's node comes back as a member later."""

from __future__ import annotations

import pytest

from potluck.core import protocol
from potluck.core.protocol import NodeState
from potluck.core.swarm.store import SwarmStore
from tests.node.node_driver import NodeUnderTest, node_environment, potluck_cli
from tests.node.test_node_process import gui_values, reply


def start_node(home, values: dict, **env: str) -> NodeUnderTest:
    node = NodeUnderTest(home, node_environment(home, **env))
    node.state(NodeState.STOPPED, timeout=30)
    node.send(protocol.SetConfig(values=values))
    node.send(protocol.Start())
    return node


def stop_node(node: NodeUnderTest) -> None:
    node.send(protocol.Shutdown())
    assert node.wait_exit(20) == 0
    assert node.garbage == []


@pytest.mark.slow
def test_create_invite_join_chat_and_come_back(tiny_model, tmp_path):
    ana_home, ben_home = tmp_path / "ana", tmp_path / "ben"
    ana = start_node(ana_home, gui_values(tiny_model, ana_home, mode="create", pc_name="Ana's desktop"))
    nodes = [ana]
    try:
        ana.state(NodeState.SERVING, timeout=180)
        (swarm,) = SwarmStore(ana_home / "config" / "swarms.json").list_swarms()
        assert (swarm.name, swarm.model_id, swarm.created_here) == ("Friday night", tiny_model, True)
        # no tailnet here: a code for this PC only, chosen explicitly
        made = potluck_cli(ana_home, "invite", "create", "--swarm", "Friday night", "--this-pc-only")
        assert made.returncode == 0, made.stderr
        code = made.stdout.split()[-1]
        assert code.startswith("potluck-")

        ben_values = gui_values(tiny_model, ben_home, mode="join", pc_name="Ben's mini PC", swarm_name="")
        ben = start_node(ben_home, ben_values, POTLUCK_INVITE_CODE=code)
        nodes.append(ben)
        ben.state(NodeState.SERVING, timeout=180)
        ana.send(protocol.Refresh())
        both = ana.expect("stats with both PCs serving", lambda e: isinstance(e, protocol.Stats)
                          and e.coverage == (2, 2, 2, 2), timeout=60)
        assert sorted((m.name, m.state, m.online) for m in both.members) == [
            ("Ana's desktop", "online", True), ("Ben's mini PC", "online", True)]

        ben.send(protocol.Generate(request_id="ben-1", prompt="Hello", temperature=0.0, max_new_tokens=6))
        _tokens, done = reply(ben, "ben-1")
        assert done.token_count >= 1 and done.stop_reason in ("eos", "length") and done.route

        stop_node(ben)  # the used-up code stays in Ben's keyring; a member needs it no more
        ben = start_node(ben_home, ben_values, POTLUCK_INVITE_CODE=code)
        nodes.append(ben)
        ben.state(NodeState.SERVING, timeout=180)
        stop_node(ben)
        stop_node(ana)
    finally:
        for node in nodes:
            node.kill()
