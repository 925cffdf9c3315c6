"""Issue 14 items 4 and 5 on two real nodes in a private swarm: Ana serves, Ben is a member held back by a serving
rule (paused, no blocks). Both PCs must agree that one friend is online; Ben's chat runs on Ana's blocks and counts
as what Ana gave; after Ben quits, Ana still lists him, offline, with when he was last seen (he used to vanish once
his records expired)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from potluck.core import protocol
from potluck.core.protocol import NodeState
from tests.node.node_driver import potluck_cli
from tests.node.test_node_process import gui_values, reply
from tests.node.test_private_swarm import start_node, stop_node


def friends_online(stats: protocol.Stats) -> list[tuple[str, str]]:
    return sorted((m.name, m.state) for m in stats.members if m.online and m.peer_id != stats.peer_id)


@pytest.mark.slow
def test_a_paused_member_is_online_on_both_pcs_and_a_member_who_quit_is_remembered(tiny_model, tmp_path):
    ana_home, ben_home = tmp_path / "ana", tmp_path / "ben"
    ana = start_node(ana_home, gui_values(tiny_model, ana_home, mode="create", pc_name="Ana's desktop"))
    nodes = [ana]
    try:
        ana.state(NodeState.SERVING, timeout=180)
        made = potluck_cli(ana_home, "invite", "create", "--swarm", "Friday night", "--this-pc-only")
        assert made.returncode == 0, made.stderr
        tomorrow = (dt.datetime.now().weekday() + 1) % 7
        rules = {"schedule": [{"days": [tomorrow], "start": "00:00", "end": "24:00"}]}
        ben = start_node(ben_home, gui_values(tiny_model, ben_home, mode="join", pc_name="Ben's mini PC",
                                              swarm_name="", rules=rules),
                         POTLUCK_INVITE_CODE=made.stdout.split()[-1])
        nodes.append(ben)
        assert "outside the schedule" in ben.state(NodeState.PAUSED, timeout=120).detail
        on_ana = ana.expect("Ana sees Ben, paused", lambda e: isinstance(e, protocol.Stats) and friends_online(e),
                            timeout=90)
        on_ben = ben.expect("Ben sees Ana, serving", lambda e: isinstance(e, protocol.Stats)
                            and friends_online(e) == [("Ana's desktop", "serving")], timeout=90)
        assert friends_online(on_ana) == [("Ben's mini PC", "paused")] and len(friends_online(on_ben)) == 1
        assert not any(isinstance(e, protocol.Sizing) for e in ben.events)  # Ben loaded nothing

        # Ben chats while paused: Ana's blocks do the work, and that is what Ana gave (item 5)
        ben.send(protocol.Generate(request_id="ben-1", prompt="Hello", temperature=0.0, max_new_tokens=6))
        _tokens, done = reply(ben, "ben-1")
        assert [hop.name for hop in done.route] == ["Ana's desktop"]
        ana.send(protocol.Refresh())
        gave = ana.expect("Ana's stats after Ben's chat", lambda e: isinstance(e, protocol.Stats)
                          and e.tokens_for_others > 0, timeout=30)
        assert gave.tokens_for_others == gave.tokens_served and gave.tokens_used == 0

        stop_node(ben)
        quit_at = time.time()
        gone = ana.expect("Ben offline on Ana's PC", lambda e: isinstance(e, protocol.Stats) and not friends_online(e),
                          timeout=120)
        (ben_row,) = [m for m in gone.members if m.name == "Ben's mini PC"]
        assert not ben_row.online and quit_at - 60 < ben_row.last_seen <= quit_at + 10  # Ben said goodbye
        assert gone.uptime_seconds and time.time() - quit_at < 25  # at once, not when his presence expired
        time.sleep(30)  # his presence and records have long expired: he stays listed
        ana.send(protocol.Refresh())
        later = ana.expect("stats a while later", lambda e: isinstance(e, protocol.Stats), timeout=30)
        assert [(m.name, m.online) for m in later.members if m.peer_id != later.peer_id] == [("Ben's mini PC", False)]
        stop_node(ana)
    finally:
        for node in nodes:
            node.kill()
