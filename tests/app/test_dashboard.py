"""The dashboard driven by the fake node: contribution numbers, coverage with gaps, members, sizing, failures,
loading progress and the history charts."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from potluck.app.dashboard import Dashboard, gave_used_text, speed_text
from potluck.app.history_view import history_charts
from potluck.app.members_table import EMPTY_TEXT
from potluck.core.protocol import HistoryDay, NodeState, Stats
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
    assert cards["tokens"] == ("41,870", "48,213 in all, with your own chats")
    assert cards["sessions"] == ("57", "2 running now")
    assert cards["uptime"][0] == "3 h 17 min"
    assert cards["traffic"] == ("1.7 GiB / 0.89 GiB", "13.3 GiB sent this month")  # GiB only, like everywhere
    assert cards["memory"] == ("6.9 GiB", "blocks 6.4 GiB · 4.7 GiB free")
    assert cards["throughput"] == ("6.4", "tokens per second, last minute")
    assert cards["gave_used"] == ("41,870 / 12,940", "you gave 3.2× what you used")
    assert dashboard.status_label.text() == "Serving blocks 12–23 of 32 · 2 friends online"
    assert len(dashboard.coverage_strip.coverage) == 32
    assert "4 blocks have no server (28–31)" in dashboard.coverage_label.text()
    rows = dashboard.members.row_texts()
    assert rows[0] == ("Sam's desktop (this PC)", "Serving", "12–23", "now")
    assert rows[-1] == ("Cho's laptop", "Offline", "none", "2 h 10 min ago")  # offline friends stay, with last seen
    assert dashboard.members.currentWidget() is dashboard.members.table
    assert "12 blocks of 0.65 GiB each fit" in dashboard.sizing_label.text()
    assert "free memory: 11.6 GiB" in dashboard.sizing_numbers.text()
    assert not dashboard.failure_panel.isVisible()


def test_dashboard_updates_live_when_new_stats_arrive(qtbot, serving_node, icons, ui_settings, tmp_path):
    stats_file = tmp_path / "stats.json"
    stats_file.write_text(json.dumps({"tokens_served": 5}))
    node = serving_node({"FAKE_NODE_STATS": str(stats_file)})
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    stats_file.write_text(json.dumps({"tokens_served": 777, "tokens_for_others": 700, "total_blocks": 4,
                                      "coverage": [1, 1, 1, 1]}))
    with qtbot.waitSignal(node.stats_received, timeout=WAIT_MS):
        node.refresh()
    assert dashboard.cards["tokens"].value_label.text() == "700"
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


@pytest.mark.parametrize("stats, text", [
    (Stats(), ("0 / 0", "tokens served for friends / used by your chats")),
    # this PC's own chats are not giving: 110 tokens served for itself, none for friends
    (Stats(tokens_served=110, tokens_for_others=0, tokens_used=110), ("0 / 110", "nothing served for friends yet")),
    (Stats(tokens_served=10, tokens_for_others=10), ("10 / 0", "all of it for friends so far")),
    (Stats(tokens_served=60, tokens_for_others=10, tokens_used=40), ("10 / 40", "you used 4.0× what you gave")),
    (Stats(tokens_for_others=45, tokens_used=10), ("45 / 10", "you gave 4.5× what you used")),
])
def test_gave_used_counts_only_work_for_others_and_never_divides_by_zero(stats, text):
    assert gave_used_text(stats) == text


@pytest.mark.parametrize("stats, text", [
    (Stats(memory_used_bytes=3 * 2**30, memory_blocks_bytes=2 * 2**30, memory_chat_bytes=2**28,
           memory_free_bytes=5 * 2**30), "blocks 2.0 GiB · chat 0.25 GiB · 5.0 GiB free"),
    # paused after a chat: no blocks, the chat's own parts are what stays
    (Stats(memory_used_bytes=2**29, memory_chat_bytes=2**28, memory_free_bytes=5 * 2**30), "chat 0.25 GiB · 5.0 GiB free"),
    (Stats(memory_free_bytes=2**30), "1.0 GiB free"),
])
def test_memory_says_what_holds_it(stats, text):
    from potluck.app.dashboard import memory_text

    assert memory_text(stats) == text


def test_speed_says_what_it_is():
    figure, sub, tooltip = speed_text(Stats(served_tokens_per_second=6.44, throughput_tokens_per_second=40.0))
    assert (figure, sub) == ("6.4", "tokens per second, last minute")
    assert "averaged over the last minute" in tooltip and "up to 40 tokens per second" in tooltip


def test_loading_shows_a_progress_bar_until_serving(qtbot, make_node, icons, ui_settings):
    node = make_node({"FAKE_NODE_LOAD_DELAY_S": "0.3"})
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    seen = []
    node.progress_received.connect(lambda p: seen.append((dashboard.load_progress.isVisible(),
                                                          dashboard.load_progress.bar.value(),
                                                          dashboard.load_progress.words.text())))
    node.start()
    qtbot.waitUntil(lambda: len(seen) >= 4, timeout=WAIT_MS)
    assert seen[0][2] == "Downloading model-00002-of-00004.safetensors: 2.0 GiB of 4.6 GiB"
    assert seen[3] == (True, 167, "Loading blocks: 2 of 12 (1.3 GiB of 7.8 GiB)")
    assert dashboard.load_progress.bar.text() == "17%"
    qtbot.waitUntil(lambda: node.state is NodeState.SERVING, timeout=WAIT_MS)
    assert not dashboard.load_progress.isVisible()


def test_history_charts_show_the_days_the_node_kept(qtbot, serving_node, icons, ui_settings, tmp_path):
    today = dt.date.today()
    days = [{"day": (today - dt.timedelta(days=1)).isoformat(), "tokens_for_others": 500, "tokens_used": 80,
             "tokens_served": 580, "serving_seconds": 7200, "bytes_up": 3 * 2**30},
            {"day": today.isoformat(), "tokens_for_others": 40, "tokens_served": 40, "serving_seconds": 900}]
    history_file = tmp_path / "history.json"
    history_file.write_text(json.dumps(days))
    node = serving_node({"FAKE_NODE_HISTORY": str(history_file)})
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    qtbot.waitUntil(lambda: node.last_history is not None, timeout=WAIT_MS)
    charts = dashboard.history.charts
    assert charts["given"].series[0].values[-2:] == (500.0, 40.0)
    assert charts["time"].series[0].values[-2:] == (2.0, 0.25)
    assert [s.values[-2] for s in charts["gave_used"].series] == [500.0, 80.0]
    assert charts["sent"].toolTip() == "Data sent: sent 3.0 GiB"
    assert not dashboard.history.empty_label.isVisible()
    assert charts["given"].grab().width() > 0  # paints without error


def test_history_charts_fill_days_without_records():
    today = dt.date(2026, 3, 4)
    charts = history_charts([HistoryDay("2026-03-01", tokens_for_others=9, tokens_used=3)], today, count=5)
    labels, (gave,) = charts["given"]
    assert labels == ["Feb 28", "Mar 1", "Mar 2", "Mar 3", "Mar 4"]
    assert gave.values == (0.0, 9.0, 0.0, 0.0, 0.0)
    assert [s.values for s in charts["gave_used"][1]] == [(0.0, 9.0, 0.0, 0.0, 0.0), (0.0, 3.0, 0.0, 0.0, 0.0)]


def test_a_serving_rule_says_why_the_pc_is_paused(qtbot, make_node, icons, ui_settings):
    node = make_node({"FAKE_NODE_PAUSED_BY_RULE": "Paused until 18:00 (outside the schedule)"})
    dashboard = make_dashboard(qtbot, node, icons, ui_settings)
    node.start()
    qtbot.waitUntil(lambda: node.state is NodeState.PAUSED, timeout=WAIT_MS)
    assert dashboard.status_label.text() == "Paused until 18:00 (outside the schedule) · no friends online yet"


def test_the_wizard_shows_the_same_progress_bar(qtbot, make_node):
    from potluck.app.wizard import FirstRunWizard

    node = make_node({"FAKE_NODE_LOAD_DELAY_S": "0.3"})
    wizard = FirstRunWizard(node, lambda config, code: None, None, default_pc_name="den")
    qtbot.addWidget(wizard)
    node.start()  # as the ready page's apply does
    qtbot.waitUntil(lambda: wizard.ready_page.load_progress.bar.value() > 0, timeout=WAIT_MS)
    assert wizard.ready_page.load_progress.words.text().startswith("Loading blocks: ")
    qtbot.waitUntil(lambda: node.state is NodeState.SERVING, timeout=WAIT_MS)
    assert wizard.ready_page.load_progress.isHidden()


@pytest.mark.parametrize("value, top", [(0, 1.0), (0.3, 0.5), (7, 10), (12_000, 20_000), (2.4, 2.5), (51, 100)])
def test_nice_top(value, top):
    from potluck.app.charts import nice_top

    assert nice_top(value) == top


def test_one_second_of_serving_is_not_a_full_bar(qtbot, make_node):
    from potluck.app.history_view import HistorySection
    from potluck.core.protocol import History

    section = HistorySection(make_node(), today=lambda: dt.date(2026, 3, 4))
    qtbot.addWidget(section)
    section.show_history(History(days=(HistoryDay("2026-03-04", serving_seconds=1.0, bytes_up=10_000),)))
    assert section.charts["time"].top == 1.0  # hours: the axis is at least one hour tall
    assert section.charts["sent"].top == 2**20
