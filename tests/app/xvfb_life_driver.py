"""Drive the real app on a real X display for issue 14 part 2 (run by test_xvfb_desktop_life.py): the dashboard
while the model loads (a real progress bar), the dashboard with the history charts, the chat with Markdown replies,
copyable code and a list of conversations, and Settings' serving rules and API. Screenshots go to argv[1]; prints one
JSON object with what it saw. Reuses xvfb_driver.launch_app (the app exactly as run_gui builds it, on the fake node).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QTime  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from potluck.core.protocol import NodeState  # noqa: E402
from tests.app.xvfb_driver import launch_app, pump, wait_until  # noqa: E402


def main(shots: Path) -> int:
    shots.mkdir(parents=True, exist_ok=True)
    qapp, desktop, app, _states, seen = launch_app()
    app.show_dashboard()
    dashboard = app.dashboard
    dashboard.resize(1000, 760)
    wait_until("the loading bar", lambda: dashboard.load_progress.isVisible() and dashboard.load_progress.bar.value() > 300,
               seconds=40)
    pump(0.2)
    dashboard.grab().save(str(shots / "dashboard-loading.png"))
    seen["loading_words"] = dashboard.load_progress.words.text()
    wait_until("the node to serve", lambda: app.node.state is NodeState.SERVING and app.node.last_stats is not None,
               seconds=40)
    wait_until("the history", lambda: app.node.last_history is not None)
    dashboard.resize(1000, 1300)
    pump(0.8)
    dashboard.grab().save(str(shots / "dashboard-history.png"))
    seen["cards"] = {key: [c.value_label.text(), c.sub_label.text()] for key, c in dashboard.cards.items()}
    seen["members"] = [list(r) for r in dashboard.members.row_texts()]
    seen["history_empty_shown"] = dashboard.history.empty_label.isVisible()
    seen["gave_used_days"] = len(dashboard.history.charts["gave_used"].labels)
    dashboard.close()

    app.show_chat()
    chat = app.chat
    chat.resize(1240, 760)
    for question in ("What is a potluck?", "How do I join a friend's swarm from a terminal?"):
        if chat.bubbles():
            chat.new_chat_button.click()
        chat.input.setPlainText(question)
        chat.send()
        wait_until("the reply", lambda: chat.pending is None and len(chat.bubbles()) == 2)
    pump(0.6)
    chat.grab().save(str(shots / "chat-markdown.png"))
    reply = chat.bubbles()[-1]
    blocks = reply.view.code_blocks()
    seen["code_blocks"] = [b.code.toPlainText() for b in blocks]
    blocks[0].copy_button.click()
    seen["clipboard"] = QApplication.clipboard().text()
    seen["conversations"] = chat.conversation_list.titles()
    seen["regenerate_visible"] = reply.regenerate_button.isVisible()
    chat.close()

    app.show_settings()
    window = app.settings_window
    window.resize(660, 900)
    panel = window.rules_panel
    panel.idle_minutes.setValue(10)
    panel.scheduled.setChecked(True)
    panel.start_time.setTime(QTime(18, 0))
    panel.end_time.setTime(QTime(8, 0))
    panel.upload_cap.setValue(50)
    panel.cpu_threads.setValue(1)
    panel.api_enabled.setChecked(True)
    pump(0.5)
    window.grab().save(str(shots / "settings-rules.png"))
    seen["schedule_words"] = panel.schedule_words.text()
    window.save_button.click()
    pump(0.3)
    seen["saved_rules"] = app.config.rules

    app.quit()
    wait_until("the node to stop", lambda: app.node.state is NodeState.STOPPED and not app.node.is_running)
    desktop.close()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
