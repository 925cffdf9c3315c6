"""The dashboard driven by the fake node: contribution numbers, coverage with gaps, members, sizing, failures."""

from __future__ import annotations

import json

from potluck.app.dashboard import Dashboard, gave_used_text
from potluck.app.members_table import EMPTY_TEXT
from potluck.core.protocol import NodeState, Stats
from tests.app.node_records import launches, sent_commands

WAIT_MS = 15_000


def make_dashboard(qtbot, node, icons, ui_settings, **kwargs) -> Dashboard:
    dashboard = Dashboard(node, icons, ui_settings, **kwargs)
    qtbot.addWidget(dashboard)
    dashboard.show()
    return dashboard


def test_dashboard_shows_this_pcs_contribution_and_the_swarm(qtbot, serving_node, icons, ui_settings):
    node = serving_node()
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    qtbot.waitUntil(lambda: dashboard.sizing_numbers.isVisible(), timeout=WAIT_MS)
    cards = {key: (card.value_label.text(), card.sub_label.text()) for key, card in dashboard.cards.items()}
    assert cards["blocks"] == ("12–23", "of 32 blocks")
    assert cards["tokens"][0] == "48,213"
    assert cards["sessions"] == ("57", "2 running now")
    assert cards["uptime"][0] == "3 h 17 min"
    assert cards["traffic"][0] == "1.7 GiB / 0.89 GiB"
    assert cards["memory"] == ("6.9 GiB", "4.7 GiB still free")
    assert cards["throughput"] == ("41.5", "tokens per second")
    assert cards["gave_used"] == ("48,213 / 12,940", "you gave 3.7× what you used")
    assert dashboard.status_label.text() == "Serving blocks 12–23 of 32 · 2 friends online"
    assert len(dashboard.coverage_strip.coverage) == 32
    assert "4 blocks have no server (28–31)" in dashboard.coverage_label.text()
    rows = dashboard.members.row_texts()
    assert rows[0] == ("Sam's desktop (this PC)", "Serving", "12–23")
    assert rows[-1] == ("Cho's laptop", "Offline", "24–31")
    assert dashboard.members.currentWidget() is dashboard.members.table
    assert "12 blocks of 0.65 GiB each fit" in dashboard.sizing_label.text()
    assert "free memory: 11.6 GiB" in dashboard.sizing_numbers.text()
    assert not dashboard.failure_panel.isVisible()


def test_dashboard_updates_live_when_new_stats_arrive(qtbot, serving_node, icons, ui_settings, tmp_path):
    stats_file = tmp_path / "stats.json"
    stats_file.write_text(json.dumps({"tokens_served": 5}))
    node = serving_node({"FAKE_NODE_STATS": str(stats_file)})
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    stats_file.write_text(json.dumps({"tokens_served": 777, "total_blocks": 4, "coverage": [1, 1, 1, 1]}))
    with qtbot.waitSignal(node.stats_received, timeout=WAIT_MS):
        node.refresh()
    assert dashboard.cards["tokens"].value_label.text() == "777"
    assert dashboard.coverage_label.text() == "Every block has a server; 4 of 4 have only one."


def test_alone_in_the_swarm_shows_a_friendly_empty_state(qtbot, serving_node, icons, ui_settings, tmp_path):
    stats_file = tmp_path / "stats.json"
    stats_file.write_text(json.dumps({"peer_id": "me", "members": [
        {"peer_id": "me", "name": "Den PC", "state": "online", "start_block": 0, "end_block": 8, "online": True}]}))
    node = serving_node({"FAKE_NODE_STATS": str(stats_file)})
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    assert dashboard.members.currentWidget() is dashboard.members.empty_label
    assert dashboard.members.empty_label.text() == EMPTY_TEXT
    assert dashboard.cards["blocks"].value_label.text() == "None"


def test_pause_and_resume_from_the_dashboard(qtbot, serving_node, icons, ui_settings):
    node = serving_node()
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    assert dashboard.serve_button.text() == "Pause serving"
    dashboard.serve_button.click()
    qtbot.waitUntil(lambda: node.state is NodeState.PAUSED, timeout=WAIT_MS)
    assert dashboard.serve_button.text() == "Resume serving"
    assert dashboard.status_label.text().startswith("Paused")
    dashboard.serve_button.click()
    qtbot.waitUntil(lambda: node.state is NodeState.SERVING, timeout=WAIT_MS)


def test_a_failed_node_shows_its_reason_log_and_try_again(qtbot, make_node, icons, ui_settings, tmp_path):
    from potluck.app.node_command import RestartPolicy

    record = tmp_path / "record.jsonl"
    node = make_node({"FAKE_NODE_EXIT_AT_START": "2", "FAKE_NODE_RECORD": str(record)},
                     restart_policy=RestartPolicy(max_restarts=0))
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    node.start()
    qtbot.waitUntil(lambda: node.state is NodeState.FAILED, timeout=WAIT_MS)
    assert dashboard.failure_panel.isVisible()
    assert "exited with code 2" in dashboard.failure_label.text()
    dashboard.log_button.click()
    assert "failing at start as told" in dashboard.log_view.toPlainText()
    dashboard.retry_button.click()
    qtbot.waitUntil(lambda: len(launches(record)) == 2 and node.state is NodeState.FAILED, timeout=WAIT_MS)


def test_opening_the_dashboard_asks_the_node_for_fresh_stats(qtbot, serving_node, icons, ui_settings, tmp_path):
    record = tmp_path / "record.jsonl"
    node = serving_node({"FAKE_NODE_RECORD": str(record)})
    make_dashboard(qtbot, node, icons, ui_settings)
    qtbot.waitUntil(lambda: any(c.KIND.value == "refresh" for c in sent_commands(record)), timeout=WAIT_MS)


def test_gave_used_wording():
    assert gave_used_text(Stats(tokens_served=10, tokens_used=0)) == ("10 / 0", "tokens served for others / used by your chats")
    assert gave_used_text(Stats(tokens_served=10, tokens_used=40))[1] == "you used 4.0× what you gave"
