"""Drive the real app on a real X display with a real system tray (run by test_xvfb_desktop.py).

Builds the app exactly as run_gui does (theme, default context, PotluckApp) on the display in $DISPLAY, with the
node command taken from POTLUCK_NODE_COMMAND, then: waits for the tray icon, opens the tray menu, pauses and
resumes through the menu's actions, opens the dashboard, chats, opens the swarm page from the tray's "Invite a
friend" and makes a code, joins another swarm whose model is a file on the friend's PC, opens the wizard (create
with Tailscale guidance, join with a cut-short code, a used code), takes screenshots into the folder given as
argv[1], quits, and prints one JSON object with what it saw. Exit code 0 means it got to the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QEventLoop, QPoint  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget  # noqa: E402

from potluck.app.app_controller import PotluckApp, default_context  # noqa: E402
from potluck.app.main import make_qapplication  # noqa: E402
from potluck.app.node_process import NodeProcess  # noqa: E402
from potluck.app.qt_compat import protect_singletons  # noqa: E402
from potluck.app.theme import BACKGROUND, apply_theme  # noqa: E402
from potluck.app.wizard import PAGE_CREATE, FirstRunWizard, real_invite_decoder  # noqa: E402
from potluck.core.model import builtin  # noqa: E402
from potluck.core.protocol import NodeState  # noqa: E402
from potluck.core.swarm.tailscale import TailscaleReport, TailscaleState  # noqa: E402

WAIT_SECONDS = 20.0


def pump(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def wait_until(what: str, predicate, seconds: float = WAIT_SECONDS) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def distinct_colors(rect) -> int:
    image = QApplication.primaryScreen().grabWindow(0, rect.x(), rect.y(), rect.width(), rect.height()).toImage()
    return len({image.pixel(x, y) for x in range(image.width()) for y in range(image.height())})


def screenshot_root(path: Path, crop: str | None = None) -> None:
    command = ["import", "-window", "root"] + (["-crop", crop] if crop else []) + [str(path)]
    subprocess.run(command, check=True, timeout=60)


def open_menu_at_icon(app: PotluckApp) -> None:
    geometry = app.tray.icon.geometry()
    app.tray.menu.popup(QPoint(geometry.right() - 240, geometry.bottom() + 4))
    wait_until("the tray menu to open", app.tray.menu.isVisible)
    pump(0.3)


def menu_names(app: PotluckApp) -> list[str]:
    return [a.objectName() for a in app.tray.menu.actions() if not a.isSeparator()]


def valid_invite_code(model_id: str = "Qwen/Qwen2.5-72B-Instruct", swarm_name: str = "Friday night",
                      swarm_id: str = "0123456789abcdef") -> str:
    """A well-formed code as a friend would paste it (made with the real invite module)."""
    import hashlib

    from potluck.core.swarm import codec, invite

    peer = codec.b58encode(b"\x12\x20" + hashlib.sha256(b"screenshot peer").digest())
    return invite.encode_invite(invite.Invite(
        swarm_name=swarm_name, swarm_id=swarm_id, model_id=model_id,
        model_revision="", bootstrap=(f"/ip4/100.101.1.1/tcp/31337/p2p/{peer}",), credential=bytes(range(16)),
        expires_at=int(time.time()) + 86_400))


def not_installed() -> TailscaleReport:
    return TailscaleReport(TailscaleState.NOT_INSTALLED)


def swarm_page(app: PotluckApp, shots: Path, seen: dict) -> None:
    """The tray's Invite a friend opens the swarm page; make a code; join another swarm with this PC's own copy."""
    app.context.tailscale_probe = lambda: TailscaleReport(TailscaleState.RUNNING, "100.101.1.7", "sam-desktop")
    app.tray.action("invite").trigger()
    page = app.swarm_window
    page.resize(900, 1000)
    wait_until("the swarm's members", lambda: len(page.view.members) == 4)
    wait_until("Tailscale's state", lambda: page.invite_panel.tailscale.report is not None)
    pump(0.3)
    seen["swarm_rows"] = [list(r) for r in page.members.row_texts()]
    page.scroll.verticalScrollBar().setValue(0)
    pump(0.3)
    page.grab().save(str(shots / "swarm.png"))
    panel = page.invite_panel
    panel.create_button.click()
    wait_until("the invite code", lambda: panel.made is not None)
    page.show_section("invite")
    pump(0.5)
    page.scroll.ensureWidgetVisible(panel.code_card, 0, 0)
    pump(0.3)
    page.grab().save(str(shots / "swarm-invite.png"))
    seen["invite_code"] = panel.code_view.toPlainText()
    seen["invite_details"] = panel.details.text()
    seen["invite_qr"] = not panel.qr_label.pixmap().isNull()
    panel.copy_button.click()
    seen["clipboard"] = QApplication.clipboard().text()
    page.join_form.code_edit.setPlainText(valid_invite_code(f"/home/ana/models/{builtin.FILE_NAME}", "Ana's club",
                                                            "0aa1bb2cc3dd4ee5"))
    page.show_section("join")
    pump(0.3)
    page.scroll.verticalScrollBar().setValue(page.scroll.verticalScrollBar().maximum())
    pump(0.3)
    page.grab().save(str(shots / "swarm-join.png"))
    seen["join_copy"] = page.join_form.copy_picker.text()  # Potluck's built-in copy of the friend's file
    seen["join_enabled"] = page.join_button.isEnabled()
    page.close()


def launch_app():
    """Build the app as run_gui does (theme, default context) on $DISPLAY over a calm backdrop, and launch it.
    Returns the QApplication, the backdrop, the app, the list of node states it goes through, and a dict of
    what was seen (so far: whether a system tray is available)."""
    protect_singletons()
    qapp = make_qapplication([])
    apply_theme(qapp)
    seen: dict = {"tray_available": QSystemTrayIcon.isSystemTrayAvailable()}
    desktop = QWidget()  # a calm backdrop instead of X's black root, kept below the tray
    desktop.setStyleSheet(f"background: {QColor(BACKGROUND).darker(108).name()};")
    desktop.setGeometry(qapp.primaryScreen().geometry())
    desktop.show()
    desktop.lower()
    app = PotluckApp(qapp, default_context(tray_available=seen["tray_available"]))
    states: list[str] = []
    app.node.state_changed.connect(lambda s: states.append(s.value))
    app.launch()
    return qapp, desktop, app, states, seen


def failed_wizard(app: PotluckApp, shots: Path, seen: dict) -> None:
    """The last page when the code was used already: why, and Back to the code."""
    used = NodeProcess(app.context.node_command, environment=lambda: {
        **os.environ, "FAKE_NODE_FAIL_START": "Could not join: This code has already been used (1 of 1 joins): ask "
                                              "your friend for a new one"})
    wizard = FirstRunWizard(used, lambda _config, _code: used.start(), real_invite_decoder(),
                            default_pc_name="Sam's desktop", tailscale_probe=not_installed,
                            secrets_where=app.context.secrets.where)
    wizard.set_logo(app.context.icons.app_icon())
    wizard.show()
    wizard.next()
    wizard.join_page.code_edit.setPlainText(valid_invite_code())
    wizard.next()
    wait_until("the used code's failure", lambda: used.state is NodeState.FAILED)
    pump(0.5)
    wizard.grab().save(str(shots / "wizard-failed.png"))
    seen["wizard_failed"] = [wizard.ready_page.title(), wizard.ready_page.state_label.text(),
                             wizard.ready_page.back_button.isVisible()]
    wizard.close()
    used.stop_blocking()


def main(shots: Path) -> int:
    shots.mkdir(parents=True, exist_ok=True)
    qapp, desktop, app, states, seen = launch_app()
    wait_until("the node to serve", lambda: app.node.state is NodeState.SERVING and app.node.last_stats is not None)
    wait_until("the tray icon to be embedded", lambda: not app.tray.icon.geometry().isEmpty())
    pump(0.5)
    icon_rect = app.tray.icon.geometry()
    seen.update(icon_visible=app.tray.icon.isVisible(), icon_geometry=[icon_rect.x(), icon_rect.y(),
                icon_rect.width(), icon_rect.height()], icon_colors=distinct_colors(icon_rect))
    seen["icon_is_serving"] = app.tray.icon.icon().cacheKey() == app.context.icons.for_node_state(NodeState.SERVING).cacheKey()

    open_menu_at_icon(app)
    seen["menu_serving"] = menu_names(app)
    seen["status_serving"] = app.tray.action("status").text()
    screen = qapp.primaryScreen().geometry()
    screenshot_root(shots / "tray-menu.png", f"420x230+{screen.width() - 420}+0")
    states.clear()
    app.tray.action("pause").trigger()
    app.tray.menu.hide()
    wait_until("the node to pause", lambda: app.node.state is NodeState.PAUSED)
    seen["states_after_pause"] = list(states)
    seen["icon_is_paused"] = app.tray.icon.icon().cacheKey() == app.context.icons.for_node_state(NodeState.PAUSED).cacheKey()
    open_menu_at_icon(app)
    seen["menu_paused"] = menu_names(app)
    seen["status_paused"] = app.tray.action("status").text()
    states.clear()
    app.tray.action("resume").trigger()
    app.tray.menu.hide()
    wait_until("the node to serve again", lambda: app.node.state is NodeState.SERVING)
    seen["states_after_resume"] = list(states)

    app.show_dashboard()
    app.dashboard.resize(940, 770)
    pump(0.5)
    wait_until("the dashboard's numbers", lambda: app.dashboard.cards["tokens"].value_label.text() != "—")
    pump(0.3)
    app.dashboard.grab().save(str(shots / "dashboard.png"))

    app.show_chat()
    app.chat.resize(980, 640)
    app.chat.input.setPlainText("What is a potluck, and how does this app work?")
    app.chat.send()
    wait_until("the reply", lambda: app.chat.pending is None and len(app.chat.bubbles()) == 2)
    pump(0.5)
    app.chat.grab().save(str(shots / "chat.png"))
    seen["reply"] = app.chat.bubbles()[-1].text
    seen["reply_caption"] = app.chat.bubbles()[-1].caption_label.text()

    app.show_settings()
    app.settings_window.log_dir_edit.setText("/home/sam/potluck-logs")  # typed, as an owner would
    app.settings_window.memory_cap.setValue(12)
    pump(0.5)
    app.settings_window.grab().save(str(shots / "settings.png"))
    seen["settings_model_read_only"] = app.settings_window.model_edit.isReadOnly()
    app.settings_window.reject()

    swarm_page(app, shots, seen)

    create = FirstRunWizard(app.node, lambda _config, _code: None, real_invite_decoder(), default_pc_name="Sam's desktop",
                            tailscale_probe=not_installed, start_page=PAGE_CREATE, secrets_where=app.context.secrets.where)
    create.set_logo(app.context.icons.app_icon())
    create.create_page.catalog.select_model("builtin")
    create.create_page.swarm_name_edit.setText("Friday night")
    create.show()
    wait_until("Tailscale's state", lambda: create.create_page.tailscale.report is not None)
    pump(0.5)
    create.grab().save(str(shots / "wizard-create.png"))
    seen["wizard_tailscale"] = create.create_page.tailscale.headline.text()
    create.close()

    wizard = FirstRunWizard(app.node, lambda _config, _code: None, real_invite_decoder(), default_pc_name="Sam's desktop",
                            tailscale_probe=not_installed, secrets_where=app.context.secrets.where)
    wizard.set_logo(app.context.icons.app_icon())
    wizard.show()
    pump(0.5)
    wizard.grab().save(str(shots / "wizard-welcome.png"))
    wizard.next()
    wizard.join_page.code_edit.setPlainText(valid_invite_code()[:-40])  # the end lost when it was copied
    pump(0.5)
    seen["wizard_bad_code"] = wizard.join_page.feedback.text()
    wizard.grab().save(str(shots / "wizard-join-error.png"))
    wizard.join_page.code_edit.setPlainText(valid_invite_code())
    pump(0.3)
    seen["wizard_good_code"] = wizard.join_page.feedback.text()
    wizard.grab().save(str(shots / "wizard-join.png"))
    wizard.next()
    wait_until("the sizing explanation", lambda: "blocks" in wizard.ready_page.sizing_label.text())
    pump(0.3)
    wizard.grab().save(str(shots / "wizard-ready.png"))
    seen["wizard_ready_title"] = wizard.ready_page.title()
    wizard.close()
    failed_wizard(app, shots, seen)

    app.quit()
    wait_until("the node to stop", lambda: app.node.state is NodeState.STOPPED and not app.node.is_running)
    seen["stopped"] = True
    desktop.close()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
