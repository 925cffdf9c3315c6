"""Drive the real app with the REAL node on a tiny model, on a real X display with a real tray (run by
test_desktop_real_node.py).

Builds the app as run_gui does (theme, default context, PotluckApp) on $DISPLAY; the node command is the real one
(`python -m potluck.app.entry node`: no POTLUCK_NODE_COMMAND). Waits for the tray icon and for the node to serve, pauses
and resumes through the tray menu's actions, chats, takes screenshots of the chat and the dashboard into argv[1],
quits, and prints one JSON object with what it saw. Helpers come from tests/app/xvfb_driver.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from potluck.app.app_controller import PotluckApp  # noqa: E402
from potluck.core.protocol import NodeState  # noqa: E402
from tests.app.xvfb_driver import distinct_colors, launch_app, menu_names, open_menu_at_icon, pump, wait_until  # noqa: E402

START_SECONDS = 240.0  # the real node imports torch and hivemind, starts a DHT and loads blocks (2 shared cores)
QUESTION = "Hello! How are you today?"


def icon_shows(app: PotluckApp, state: NodeState) -> bool:
    return app.tray.icon.icon().cacheKey() == app.context.icons.for_node_state(state).cacheKey()


def main(shots: Path) -> int:
    shots.mkdir(parents=True, exist_ok=True)
    qapp, desktop, app, states, seen = launch_app()
    wait_until("the real node to serve", lambda: app.node.state is NodeState.SERVING and app.node.last_stats is not None
               and app.node.last_stats.coverage, START_SECONDS)
    seen["hello_version"] = app.node.hello.version
    wait_until("the tray icon to be embedded", lambda: not app.tray.icon.geometry().isEmpty())
    pump(0.5)
    icon_rect = app.tray.icon.geometry()
    seen.update(icon_visible=app.tray.icon.isVisible(), icon_width=icon_rect.width(),
                icon_colors=distinct_colors(icon_rect))
    seen["icon_is_serving"] = icon_shows(app, NodeState.SERVING)

    open_menu_at_icon(app)
    seen["menu_serving"] = menu_names(app)
    seen["status_serving"] = app.tray.action("status").text()
    states.clear()
    app.tray.action("pause").trigger()
    app.tray.menu.hide()
    wait_until("the node to pause", lambda: app.node.state is NodeState.PAUSED, 90)
    seen["states_after_pause"] = list(states)
    seen["icon_is_paused"] = icon_shows(app, NodeState.PAUSED)
    open_menu_at_icon(app)
    seen["menu_paused"] = menu_names(app)
    seen["status_paused"] = app.tray.action("status").text()
    states.clear()
    app.tray.action("resume").trigger()
    app.tray.menu.hide()
    wait_until("the node to serve again", lambda: app.node.state is NodeState.SERVING, 120)
    seen["states_after_resume"] = list(states)

    tokens: list[str] = []
    app.node.token_received.connect(lambda token: tokens.append(token.text))
    app.show_chat()
    app.chat.resize(980, 640)
    app.chat.sampling.temperature.setValue(0.0)  # greedy: the same reply every run
    app.chat.sampling.max_new_tokens.setValue(24)  # a random-weight model: past this it emits invalid bytes
    app.chat.input.setPlainText(QUESTION)
    app.chat.send()
    wait_until("the streamed reply", lambda: app.chat.pending is None and len(app.chat.bubbles()) == 2, 120)
    pump(0.5)
    app.chat.grab().save(str(shots / "chat-real-node.png"))
    reply = app.chat.bubbles()[-1]
    seen.update(reply=reply.text, reply_caption=reply.caption_label.text(), tokens_streamed=len(tokens),
                streamed_text="".join(tokens))

    app.show_dashboard()
    app.dashboard.resize(940, 770)
    app.node.refresh()
    wait_until("stats counting the chat", lambda: app.node.last_stats.tokens_used > 0 and app.node.last_stats.coverage
               and app.node.last_stats.coverage[0] > 0, 30)
    pump(1.0)
    app.dashboard.grab().save(str(shots / "dashboard-real-node.png"))
    stats = app.node.last_stats
    seen.update(members=[(m.name, m.state, m.online) for m in stats.members], coverage=list(stats.coverage),
                self_listed=any(m.peer_id == stats.peer_id for m in stats.members), tokens_used=stats.tokens_used,
                tokens_served=stats.tokens_served)

    app.quit()
    wait_until("the node to stop", lambda: app.node.state is NodeState.STOPPED and not app.node.is_running, 40)
    seen["stopped"] = True
    seen["log_tail"] = app.node.log_tail()[-5:]
    desktop.close()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
