"""A serving rule holding this PC back shows in the tray: the paused icon, and the rule's words in the tooltip and
the menu's status line ("Paused until 18:00 (outside the schedule)", "Paused: on battery")."""

from __future__ import annotations

import pytest

from potluck.core.protocol import NodeState
from tests.app.test_tray import make_tray, open_menu

WAIT_MS = 15_000


@pytest.mark.parametrize("reason", ["Paused until 18:00 (outside the schedule)",
                                    "Paused: on battery (serves again when plugged in)"])
def test_the_tray_says_why_this_pc_is_not_serving(qtbot, make_node, icons, reason):
    node = make_node({"FAKE_NODE_PAUSED_BY_RULE": reason})
    tray, _calls = make_tray(qtbot, node, icons)
    node.start()
    qtbot.waitUntil(lambda: node.state is NodeState.PAUSED, timeout=WAIT_MS)
    assert tray.icon.toolTip() == f"Potluck — {reason} · no friends online yet"
    assert tray.icon.icon().cacheKey() == icons.for_node_state(NodeState.PAUSED).cacheKey()
    _names, texts = open_menu(qtbot, tray)
    assert texts["status"].startswith(reason) and texts["resume"] == "Resume serving"
