"""One PC of the two-user walk (run by test_two_users_desktop.py): the real app with the REAL node and the built-in
model (SmolLM2-135M-Instruct, a .gguf), on its own X display with a real tray and its own POTLUCK_HOME.

    python walk_driver.py ana SHARED SHOTS     create a swarm in the wizard, make codes on the swarm page,
                                               see Ben, remove him, make him a new code
    python walk_driver.py ben SHARED SHOTS     join with Ana's code in the wizard, see Ana, chat, be told of the
                                               removal, paste the new code on the swarm page

The two talk only as two friends would: through files in SHARED (the code "sent over a chat", and "done" notes
that stand for "I did it, your turn"). Each prints one JSON object with what it saw; screenshots go to SHOTS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication

from potluck.app.app_controller import PotluckApp
from potluck.core.protocol import NodeState
from tests.app.xvfb_driver import launch_app, open_menu_at_icon, pump, screenshot_root, wait_until

LOAD_SECONDS = 900.0  # two real nodes on two shared cores: opening and loading 30 blocks each
STEP_SECONDS = 600.0
QUESTION = "What is the capital of France?"


def wait_file(path: Path, seconds: float = STEP_SECONDS) -> str:
    wait_until(f"{path.name} from the other PC", path.exists, seconds)
    return path.read_text()


def note(path: Path, text: str = "") -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def clipboard_via_xclip() -> str:
    """The X clipboard as another program reads it (the app owns the selection, so keep its event loop running)."""
    reader = subprocess.Popen(["xclip", "-o", "-selection", "clipboard"], stdout=subprocess.PIPE, text=True)
    wait_until("xclip to read the clipboard", lambda: reader.poll() is not None, 20)
    return reader.stdout.read()


def serving(app: PotluckApp) -> bool:
    return app.node.state is NodeState.SERVING


def states_of(app: PotluckApp, seen: dict) -> None:
    app.node.state_changed.connect(lambda s: seen.setdefault("states", []).append([s.value, app.node.detail]))


def swarm_shot(app: PotluckApp, shots: Path, name: str, section: str = "") -> None:
    app.show_swarm(section)
    app.swarm_window.resize(900, 1000)
    pump(1.0)
    app.swarm_window.grab().save(str(shots / name))


def online_members(app: PotluckApp) -> list[str]:
    view = app.swarm_client.last_view
    return sorted(m.name for m in view.members if m.online and m.active) if view is not None else []


def make_code(app: PotluckApp, seen: dict, key: str) -> str:
    panel = app.swarm_window.invite_panel
    panel.made = None
    panel.create_button.click()
    wait_until("the invite's answer", lambda: panel.made is not None or panel.error_label.isVisible(), 120)
    if panel.made is None:  # no tailnet here: the node refuses a code no friend could use
        seen[f"{key}_refused"] = panel.error_label.text()
        panel.this_pc_only.setChecked(True)
        panel.create_button.click()
        wait_until("the code", lambda: panel.made is not None, 120)
    panel.copy_button.click()
    pump(0.5)
    seen[f"{key}_details"] = panel.details.text()
    code = clipboard_via_xclip().strip() or QApplication.clipboard().text()
    seen[f"{key}_copied_matches"] = code == panel.made.code
    return code


def ana(app: PotluckApp, shared: Path, shots: Path, seen: dict) -> None:
    wizard = app.wizard
    wizard.welcome.create_button.setChecked(True)
    wizard.next()
    page = wizard.create_page
    page.model_picker.builtin_button.click()
    page.swarm_name_edit.setText("Friday night")
    page.pc_name_edit.setText("Ana's PC")
    wait_until("Tailscale's state", lambda: page.tailscale.report is not None, 60)
    pump(0.5)
    wizard.grab().save(str(shots / "walk-ana-create.png"))
    seen["ana_tailscale"] = page.tailscale.headline.text()
    wizard.next()
    wait_until("Ana's node to serve", lambda: serving(app), LOAD_SECONDS)
    pump(0.5)
    wizard.grab().save(str(shots / "walk-ana-ready.png"))
    seen["ana_ready"] = [wizard.ready_page.title(), wizard.ready_page.state_label.text()]
    wizard.close()
    swarm_shot(app, shots, "walk-ana-swarm.png", "invite")
    wait_until("Tailscale's state", lambda: app.swarm_window.invite_panel.tailscale.report is not None, 60)
    note(shared / "code1.txt", make_code(app, seen, "code1"))
    swarm_shot(app, shots, "walk-ana-invite.png", "invite")
    wait_until("Ben online in Ana's swarm page", lambda: len(online_members(app)) == 2, STEP_SECONDS)
    seen["ana_sees"] = online_members(app)
    seen["ana_rows"] = [list(r) for r in app.swarm_window.members.row_texts()]
    swarm_shot(app, shots, "walk-ana-both.png")
    wait_file(shared / "chat_done.txt")
    ben = next(m for m in app.swarm_client.last_view.members if not m.this_pc and m.active)
    app.swarm_window.members.remove_button(ben.peer_id).click()  # the driver's confirm says yes
    wait_until("the removal's answer", lambda: "was removed" in app.swarm_window.status.text(), 120)
    seen["ana_removed"] = app.swarm_window.status.text()
    swarm_shot(app, shots, "walk-ana-removed.png")
    note(shared / "revoked.txt")
    seen["ben_told_ana"] = wait_file(shared / "ben_told.txt")
    note(shared / "code2.txt", make_code(app, seen, "code2"))
    wait_until("Ben back in Ana's swarm page", lambda: len(online_members(app)) == 2 and len(
        app.swarm_client.last_view.members) == 3, STEP_SECONDS)
    seen["ana_sees_again"] = [list(r) for r in app.swarm_window.members.row_texts()]
    swarm_shot(app, shots, "walk-ana-back.png")
    note(shared / "ana_done.txt")
    wait_file(shared / "ben_done.txt")


def ben(app: PotluckApp, shared: Path, shots: Path, seen: dict) -> None:
    code = wait_file(shared / "code1.txt")
    wizard = app.wizard
    wizard.next()
    wizard.join_page.code_edit.setPlainText(code)
    wizard.join_page.pc_name_edit.setText("Ben's PC")
    form = wizard.join_page.form
    seen["ben_code_feedback"] = form.feedback.text()
    seen["ben_copy"] = [form.copy_box.isVisible(), form.copy_picker.text(), form.reach_text]
    pump(0.5)
    wizard.grab().save(str(shots / "walk-ben-join.png"))
    wizard.next()
    wait_until("Ben's node to serve", lambda: serving(app), LOAD_SECONDS)
    seen["ben_ready"] = [wizard.ready_page.title(), wizard.ready_page.state_label.text()]
    wizard.close()
    app.show_swarm()
    wait_until("Ana online in Ben's swarm page", lambda: len(online_members(app)) == 2, STEP_SECONDS)
    seen["ben_sees"] = online_members(app)
    swarm_shot(app, shots, "walk-ben-both.png")
    app.show_chat()
    app.chat.resize(980, 640)
    app.chat.sampling.temperature.setValue(0.0)
    app.chat.sampling.max_new_tokens.setValue(24)
    app.chat.input.setPlainText(QUESTION)
    app.chat.send()
    wait_until("the reply", lambda: app.chat.pending is None and len(app.chat.bubbles()) == 2, 300)
    pump(0.5)
    app.chat.grab().save(str(shots / "walk-ben-chat.png"))
    reply = app.chat.bubbles()[-1]
    seen["ben_reply"] = [reply.text, reply.caption_label.text()]
    note(shared / "chat_done.txt", reply.text)
    wait_file(shared / "revoked.txt")
    wait_until("Ben's node told of the removal", lambda: app.node.state is NodeState.FAILED, STEP_SECONDS)
    seen["ben_told"] = [app.node.detail, app.tray.last_message]
    swarm_shot(app, shots, "walk-ben-removed.png")
    seen["ben_banner"] = app.swarm_window.removed_banner.isVisible()
    open_menu_at_icon(app)
    seen["ben_menu"] = [a.text() for a in app.tray.menu.actions() if not a.isSeparator()]
    screenshot_root(shots / "walk-ben-tray.png", "420x260+860+0")
    app.tray.menu.hide()
    note(shared / "ben_told.txt", app.node.detail)
    code2 = wait_file(shared / "code2.txt")
    app.tray.action("new_code").trigger()
    app.swarm_window.join_form.code_edit.setPlainText(code2)
    wait_until("the join button", app.swarm_window.join_button.isEnabled, 30)
    app.swarm_window.join_button.click()
    wait_until("Ben serving again", lambda: serving(app) and app.swarm_client.last_view is not None
               and not app.swarm_client.last_view.this_pc_removed, LOAD_SECONDS)
    seen["ben_rejoined"] = app.swarm_window.status.text()
    wait_until("Ana online again", lambda: len(online_members(app)) == 2, STEP_SECONDS)
    swarm_shot(app, shots, "walk-ben-back.png")
    note(shared / "ben_done.txt")
    wait_file(shared / "ana_done.txt")


def main(who: str, shared: Path, shots: Path) -> int:
    shots.mkdir(parents=True, exist_ok=True)
    _qapp, desktop, app, _states, seen = launch_app()
    app.context.confirm = lambda _title, _question: True  # the friend clicks Yes
    states_of(app, seen)
    try:
        (ana if who == "ana" else ben)(app, shared, shots, seen)
    except Exception as exc:  # say where it stopped, with what was seen so far
        seen["error"] = f"{type(exc).__name__}: {exc}"
        seen["log_tail"] = app.node.log_tail()[-25:]
    app.quit()
    wait_until("the node to stop", lambda: not app.node.is_running, 60)
    desktop.close()
    print(json.dumps(seen))
    return 0 if "error" not in seen else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
