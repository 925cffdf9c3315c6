"""The tray menu, rebuilt when it opens, driven against the fake node; icons follow the state; invites and another
code lead to the swarm page; tray messages read as sentences."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint

from potluck.app.tray import Tray
from potluck.core.protocol import AlertLevel, NodeState

WAIT_MS = 15_000


class Calls:
    def __init__(self):
        self.names: list[str] = []

    def recorder(self, name: str):
        return lambda: self.names.append(name)


def make_tray(qtbot, node, icons, calls: Calls | None = None):
    calls = calls or Calls()
    tray = Tray(node, icons, open_dashboard=calls.recorder("dashboard"), open_chat=calls.recorder("chat"),
                open_settings=calls.recorder("settings"), open_swarm=lambda section: calls.names.append(f"swarm:{section}"),
                quit_app=calls.recorder("quit"))
    return tray, calls


def open_menu(qtbot, tray):
    """Open the menu as a user would (its aboutToShow rebuilds it), read it, close it."""
    tray.menu.popup(QPoint(10, 10))
    qtbot.waitUntil(tray.menu.isVisible, timeout=WAIT_MS)
    names = [a.objectName() for a in tray.menu.actions() if not a.isSeparator()]
    texts = {a.objectName(): a.text() for a in tray.menu.actions() if not a.isSeparator()}
    tray.menu.hide()
    return names, texts


def test_menu_shows_status_and_pause_resume_follows_the_node(qtbot, serving_node, icons):
    node = serving_node()
    tray, _ = make_tray(qtbot, node, icons)
    names, texts = open_menu(qtbot, tray)
    assert names == ["status", "pause", "dashboard", "chat", "swarm", "invite", "settings", "quit"]
    assert texts["status"] == "Serving blocks 12–23 of 32 · 2 friends online"
    assert not tray.action("status").isEnabled()
    assert tray.icon.toolTip() == "Potluck — Serving blocks 12–23 of 32 · 2 friends online"
    states: list[NodeState] = []
    node.state_changed.connect(states.append)
    tray.action("pause").trigger()
    qtbot.waitUntil(lambda: node.state is NodeState.PAUSED, timeout=WAIT_MS)
    assert states == [NodeState.DRAINING, NodeState.PAUSED]  # pause drains first
    names, texts = open_menu(qtbot, tray)
    assert "resume" in names and "pause" not in names
    assert texts["status"] == "Paused · 2 friends online"
    tray.action("resume").trigger()
    qtbot.waitUntil(lambda: node.state is NodeState.SERVING, timeout=WAIT_MS)
    names, _ = open_menu(qtbot, tray)
    assert "pause" in names


def test_icon_follows_the_state(qtbot, serving_node, icons):
    node = serving_node()
    tray, _ = make_tray(qtbot, node, icons)
    assert tray.icon.icon().cacheKey() == icons.for_node_state(NodeState.SERVING).cacheKey()
    node.pause()
    qtbot.waitUntil(lambda: node.state is NodeState.PAUSED, timeout=WAIT_MS)
    assert tray.icon.icon().cacheKey() == icons.for_node_state(NodeState.PAUSED).cacheKey()
    assert icons.for_node_state(NodeState.PAUSED).cacheKey() != icons.for_node_state(NodeState.SERVING).cacheKey()


def test_a_failed_node_offers_try_again(qtbot, make_node, icons):
    from potluck.app.node_command import RestartPolicy

    node = make_node({"FAKE_NODE_EXIT_AT_START": "1"}, restart_policy=RestartPolicy(max_restarts=0))
    tray, _ = make_tray(qtbot, node, icons)
    node.start()
    qtbot.waitUntil(lambda: node.state is NodeState.FAILED, timeout=WAIT_MS)
    names, texts = open_menu(qtbot, tray)
    assert "retry" in names and texts["status"] == "Stopped by an error"
    assert texts["new_code"] == "Enter another invite code…"  # a used or bad code is never a dead end
    assert tray.icon.icon().cacheKey() == icons.for_node_state(NodeState.FAILED).cacheKey()


def test_window_and_quit_actions_call_their_callables(qtbot, make_node, icons):
    tray, calls = make_tray(qtbot, make_node(), icons)
    open_menu(qtbot, tray)
    for name in ("dashboard", "chat", "swarm", "invite", "settings", "quit"):
        tray.action(name).trigger()
    assert calls.names == ["dashboard", "chat", "swarm:", "swarm:invite", "settings", "quit"]
    names, _ = open_menu(qtbot, tray)
    assert names[1] == "resume"  # a stopped node offers to serve


def test_a_failed_node_offers_another_code_on_the_swarm_page(qtbot, make_node, icons):
    node = make_node({"FAKE_NODE_FAIL_START": "Could not join: This code has already been used (1 of 1 joins)"})
    tray, calls = make_tray(qtbot, node, icons)
    node.start()
    qtbot.waitUntil(lambda: node.state is NodeState.FAILED, timeout=WAIT_MS)
    open_menu(qtbot, tray)
    tray.action("new_code").trigger()
    assert calls.names == ["swarm:join"]


@pytest.mark.parametrize(("text", "shown"), [
    ("Could not join: the code was used", "Could not join: the code was used."),
    ("Ready.  Paste it\nto a friend", "Ready. Paste it to a friend."),
    ("Is it there?", "Is it there?"),
])
def test_tray_messages_end_as_sentences(qtbot, make_node, icons, text, shown):
    tray, _ = make_tray(qtbot, make_node(), icons)
    tray.show_message("Title", text, AlertLevel.INFO)
    assert tray.last_message == ("Title", shown)
