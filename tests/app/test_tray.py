"""The tray menu, rebuilt when it opens, driven against the fake node; icons follow the state; invites."""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication

from potluck.app.tray import Tray
from potluck.core.protocol import NodeState

WAIT_MS = 15_000


class Calls:
    def __init__(self):
        self.names: list[str] = []

    def recorder(self, name: str):
        return lambda: self.names.append(name)


def make_tray(qtbot, node, icons, make_invite=lambda: "potluck-test-code", calls: Calls | None = None):
    calls = calls or Calls()
    tray = Tray(node, icons, open_dashboard=calls.recorder("dashboard"), open_chat=calls.recorder("chat"),
                open_settings=calls.recorder("settings"), make_invite=make_invite, quit_app=calls.recorder("quit"),
                clipboard=QApplication.clipboard())
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
    assert names == ["status", "pause", "dashboard", "chat", "invite", "settings", "quit"]
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
    assert tray.icon.icon().cacheKey() == icons.for_node_state(NodeState.FAILED).cacheKey()


def test_window_and_quit_actions_call_their_callables(qtbot, make_node, icons):
    tray, calls = make_tray(qtbot, make_node(), icons)
    open_menu(qtbot, tray)
    for name in ("dashboard", "chat", "settings", "quit"):
        tray.action(name).trigger()
    assert calls.names == ["dashboard", "chat", "settings", "quit"]
    names, _ = open_menu(qtbot, tray)
    assert names[1] == "resume"  # a stopped node offers to serve


def test_invite_a_friend_copies_the_code_and_says_so(qtbot, make_node, icons):
    QApplication.clipboard().setText("")
    tray, _ = make_tray(qtbot, make_node(), icons, make_invite=lambda: "potluck-0123abcd")
    open_menu(qtbot, tray)
    tray.action("invite").trigger()
    qtbot.waitUntil(lambda: QApplication.clipboard().text() == "potluck-0123abcd", timeout=WAIT_MS)
    assert tray.last_message[0] == "Invite copied"
    assert not tray.inviting


def test_a_failed_invite_is_reported_and_nothing_is_copied(qtbot, make_node, icons):
    QApplication.clipboard().setText("keep me")

    def refuse() -> str:
        raise RuntimeError("Creating an invite failed: this PC is not in a swarm yet")

    tray, _ = make_tray(qtbot, make_node(), icons, make_invite=refuse)
    tray.invite_friend()
    qtbot.waitUntil(lambda: tray.last_message is not None, timeout=WAIT_MS)
    assert tray.last_message == ("No invite created", "Creating an invite failed: this PC is not in a swarm yet")
    assert QApplication.clipboard().text() == "keep me"
