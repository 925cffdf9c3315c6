"""Issue 14 part 2 on the real node process: loading progress, honest gave/used, history, cancel that closes the
servers' sessions, and serving rules that drain, pause and resume (driven over stdin/stdout as the app does)."""

from __future__ import annotations

import datetime as dt

import pytest

from potluck.core import protocol
from potluck.core.protocol import NodeState
from tests.node.node_driver import NodeUnderTest
from tests.node.test_node_process import gui_values, reply

pytestmark = pytest.mark.slow


def outside_now() -> dict:
    """A schedule whose only window is tomorrow (so not now)."""
    tomorrow = (dt.datetime.now().weekday() + 1) % 7
    return {"schedule": [{"days": [tomorrow], "start": "00:00", "end": "24:00"}]}


@pytest.fixture(scope="module")
def node(tiny_model, tmp_path_factory):
    home = tmp_path_factory.mktemp("life-home")
    node = NodeUnderTest(home)
    node.home = home
    try:
        node.state(NodeState.STOPPED, timeout=30)
        node.send(protocol.SetConfig(values=gui_values(tiny_model, home, mode="plain", rules=outside_now())))
        node.send(protocol.Start())
        yield node
    finally:
        node.kill()


def test_a_schedule_keeps_the_node_paused_and_says_until_when(node):
    paused = node.state(NodeState.PAUSED, timeout=60)
    assert paused.detail.startswith("Paused until tomorrow 00:00") and "outside the schedule" in paused.detail
    assert not any(isinstance(e, protocol.Sizing) for e in node.events)  # nothing was loaded
    node.send(protocol.SetConfig(values={"rules": {}}))  # the owner drops the rule: it serves by itself
    node.state(NodeState.SERVING, timeout=180)


def test_loading_reports_progress_in_blocks_and_bytes(node):
    loads = [e for e in node.events if isinstance(e, protocol.Progress) and e.stage == "load"]
    assert [(e.done_blocks, e.total_blocks) for e in loads] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert loads[-1].done_bytes == loads[-1].total_bytes > 0


def test_own_chats_are_used_not_given_and_the_history_has_today(node):
    node.send(protocol.Generate(request_id="own", prompt="Hello there", temperature=0.0, max_new_tokens=6))
    _tokens, done = reply(node, "own")
    node.send(protocol.Refresh())
    stats = node.expect("stats after our chat", lambda e: isinstance(e, protocol.Stats) and e.tokens_used > 0, 30)
    assert stats.tokens_served > 0 and stats.tokens_for_others == 0  # this PC's own chat is not giving
    assert stats.tokens_used >= done.token_count
    assert stats.memory_blocks_bytes > 0 and stats.memory_chat_bytes > 0  # what the memory figure is made of
    assert stats.memory_used_bytes > stats.memory_blocks_bytes + stats.memory_chat_bytes
    node.send(protocol.Refresh())
    history = node.expect("the history", lambda e: isinstance(e, protocol.History) and e.days
                          and e.days[-1].tokens_used > 0, 30)
    today = history.days[-1]
    assert today.day == dt.date.today().isoformat() and today.tokens_for_others == 0 and today.tokens_served > 0


def test_cancel_closes_the_servers_session(node):
    node.send(protocol.Generate(request_id="long", prompt="Once upon a time", temperature=0.0, max_new_tokens=2000))
    node.expect("the first token", lambda e: isinstance(e, protocol.Token) and e.request_id == "long", timeout=60)
    node.send(protocol.Cancel(request_id="long"))
    _tokens, done = reply(node, "long", timeout=30)
    assert done.stop_reason == "cancelled" and done.token_count < 2000
    node.send(protocol.Refresh())
    node.expect("no session left on the server", lambda e: isinstance(e, protocol.Stats) and e.active_sessions == 0
                and e.sessions_served > 0, timeout=15)


def test_an_upload_cap_drains_and_pauses(node):
    node.send(protocol.SetConfig(values={"rules": {"monthly_upload_cap_bytes": 1}}))
    node.state(NodeState.DRAINING, timeout=30)
    paused = node.state(NodeState.PAUSED, timeout=60)
    assert "this month's upload cap (1 bytes) is reached" in paused.detail
    node.send(protocol.Start())  # the owner's Resume: the rule still holds, and says so
    assert "upload cap" in node.state(NodeState.PAUSED, timeout=30).detail
    node.send(protocol.Refresh())
    stats = node.expect("stats while paused", lambda e: isinstance(e, protocol.Stats) and e.end_block == 0, 30)
    assert stats.month_bytes_up > 0 and stats.memory_blocks_bytes == 0
