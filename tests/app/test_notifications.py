"""Notifications for lost blocks and a failed node, without repeating the same message."""

from __future__ import annotations

from potluck.app.node_command import RestartPolicy
from potluck.app.notifications import FAILED_TITLE, Notifier
from potluck.core.protocol import Alert, AlertLevel, NodeState

WAIT_MS = 15_000


class Shown:
    def __init__(self):
        self.messages: list[tuple[str, str, AlertLevel]] = []

    def __call__(self, title, text, level):
        self.messages.append((title, text, level))


def test_a_block_without_server_is_notified(qtbot, make_node):
    node = make_node({"FAKE_NODE_ALERT": "Block 28 has no server left"})
    shown = Shown()
    notifier = Notifier(node, shown)  # noqa: F841 (kept alive for the test)
    node.start()
    qtbot.waitUntil(lambda: shown.messages != [], timeout=WAIT_MS)
    assert shown.messages == [("The swarm has a gap", "Block 28 has no server left", AlertLevel.CRITICAL)]


def test_a_failed_node_is_notified_with_its_reason(qtbot, make_node):
    node = make_node({"FAKE_NODE_EXIT_AT_START": "9"}, restart_policy=RestartPolicy(max_restarts=0))
    shown = Shown()
    notifier = Notifier(node, shown)  # noqa: F841 (kept alive for the test)
    node.start()
    qtbot.waitUntil(lambda: node.state is NodeState.FAILED, timeout=WAIT_MS)
    ((title, text, level),) = shown.messages
    assert title == FAILED_TITLE and "exited with code 9" in text and level is AlertLevel.CRITICAL


def test_repeats_are_suppressed_for_a_while_and_info_is_not_notified(make_node):
    now = [0.0]
    shown = Shown()
    notifier = Notifier(make_node(), shown, clock=lambda: now[0], repeat_after_seconds=600)
    gap = Alert(level=AlertLevel.CRITICAL, text="Block 3 has no server left")
    notifier.on_alert(gap)
    now[0] = 300
    notifier.on_alert(gap)
    notifier.on_alert(Alert(level=AlertLevel.WARNING, text="Block 4 has one server left"))
    notifier.on_alert(Alert(level=AlertLevel.INFO, text="Ana joined"))
    now[0] = 601
    notifier.on_alert(gap)
    assert [m[1] for m in shown.messages] == ["Block 3 has no server left", "Block 4 has one server left",
                                              "Block 3 has no server left"]


def test_a_reason_without_a_full_stop_and_the_advice_read_as_two_sentences(qtbot, make_node):
    """A node's reason often ends without a full stop ("…ask for a new one"); the toast must not run it into the
    next sentence ("…ask for a new one Open the dashboard")."""
    node = make_node({"FAKE_NODE_FAIL_START": "Could not join: This code was cancelled by the person who made it: "
                                              "ask for a new one"})
    shown = Shown()
    notifier = Notifier(node, shown)  # noqa: F841 (kept alive for the test)
    node.start()
    qtbot.waitUntil(lambda: shown.messages != [], timeout=WAIT_MS)
    ((_title, text, _level),) = shown.messages
    assert text == ("Could not join: This code was cancelled by the person who made it: ask for a new one. "
                    "The dashboard shows the details and the log.")
