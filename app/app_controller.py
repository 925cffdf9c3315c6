"""PotluckApp: wires the node process, the tray, the notifications and the windows together.

Everything it needs arrives in one `AppContext` (production values come from `default_context`), so tests build
the whole app around the fake node. Windows are created the first time they are opened.

The settings follow the node: the wizard's choices are saved only once the node is in the swarm (it serves, or
says which swarm it is in), so a bad or used code leaves nothing half set up and the wizard comes back. After a
join or a switch on the swarm page the settings name the new swarm; after leaving there are none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication, QWidget

from potluck.app.autostart import Autostart, gui_command
from potluck.app.chat import ChatWindow
from potluck.app.config_store import AppConfig, ConfigError, SwarmMode, load_config, save_config
from potluck.app.dashboard import Dashboard
from potluck.app.icons import IconSet
from potluck.app.log_file import NodeLogFile
from potluck.app.node_command import NodeTimeouts, RestartPolicy, node_command, node_environment
from potluck.app.node_process import NodeProcess
from potluck.app.notifications import Notifier
from potluck.app.paths import config_file, default_log_dir, resources_dir
from potluck.app.secrets_store import SecretKey, SecretStore
from potluck.app.settings import SettingsWindow
from potluck.app.swarm_client import SwarmClient
from potluck.app.swarm_members import Confirm, ask
from potluck.app.swarm_page import SwarmWindow
from potluck.app.tailscale_help import Probe
from potluck.app.tray import Tray
from potluck.app.wizard import PAGE_CREATE, PAGE_WELCOME, FirstRunWizard, InviteDecoder, real_invite_decoder
from potluck.app.words import sentences
from potluck.core import protocol
from potluck.core.protocol import AlertLevel, NodeState
from potluck.core.swarm.tailscale import tailscale_state


@dataclass
class AppContext:
    node_command: list[str]
    config_path: Path
    secrets: SecretStore
    ui_settings: QSettings
    icons: IconSet
    autostart: Autostart
    invite_decoder: InviteDecoder | None
    default_log_dir: Path
    tray_available: bool = True
    base_environment: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    node_timeouts: NodeTimeouts = NodeTimeouts()
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    tailscale_probe: Probe = tailscale_state  # asks this PC's Tailscale how it is (off the GUI thread)
    confirm: Confirm = ask  # yes/no questions before removing a member, leaving or switching


def default_context(tray_available: bool) -> AppContext:
    base = dict(os.environ)
    command, working_dir = gui_command()
    return AppContext(
        node_command=node_command(base),
        config_path=config_file(),
        secrets=SecretStore(),
        ui_settings=QSettings(),
        icons=IconSet(resources_dir() / "icons"),
        autostart=Autostart(command, working_dir),
        invite_decoder=real_invite_decoder(),
        default_log_dir=default_log_dir(),
        tray_available=tray_available,
        base_environment=base,
    )


class PotluckApp(QObject):
    def __init__(self, qapp: QApplication, context: AppContext, quit_event_loop: Callable[[], None] | None = None) -> None:
        """quit_event_loop ends the app's event loop (QApplication.quit unless given)."""
        super().__init__()
        self._qapp = qapp
        self._quit_event_loop = quit_event_loop or qapp.quit
        self.context = context
        self.config_error = ""
        try:
            self.config: AppConfig | None = load_config(context.config_path)
        except ConfigError as exc:
            self.config, self.config_error = None, str(exc)
        self.config_saved = self.config is not None  # False while the wizard's choices wait for the node
        self._restarting = False  # the node restarts with new choices: what the old one says no longer counts
        self._pc_name = self.config.pc_name if self.config is not None else ""
        self.node = NodeProcess(context.node_command, environment=self._node_environment,
                                config_values=self._node_config_values, timeouts=context.node_timeouts,
                                restart_policy=context.restart_policy, parent=self)
        self.log_file = NodeLogFile(self._log_dir())
        self.node.log_line.connect(lambda line: self.log_file.write(line))
        self.tray = Tray(self.node, context.icons, open_dashboard=self.show_dashboard, open_chat=self.show_chat,
                         open_settings=self.show_settings, open_swarm=self.show_swarm, quit_app=self.quit, parent=self)
        self.notifier = Notifier(self.node, self.tray.show_message, parent=self)
        self.swarm_client = SwarmClient(self.node, parent=self)
        self.swarm_client.view_changed.connect(self._on_swarm_view)
        self.swarm_client.result.connect(self._on_swarm_result)
        self.node.state_changed.connect(self._on_node_state)
        self.node.hello_received.connect(lambda _hello: setattr(self, "_restarting", False))
        self.dashboard: Dashboard | None = None
        self.chat: ChatWindow | None = None
        self.settings_window: SettingsWindow | None = None
        self.wizard: FirstRunWizard | None = None
        self.swarm_window: SwarmWindow | None = None
        self.quitting = False
        qapp.setQuitOnLastWindowClosed(not context.tray_available)

    # ------------------------------------------------------------------ life cycle

    def launch(self) -> None:
        if self.context.tray_available:
            self.tray.show()
        if self.config is None:
            self.show_wizard()
            if self.config_error:
                self.tray.show_message("Settings could not be read",
                                       sentences(self.config_error, "Please set Potluck up again"), AlertLevel.WARNING)
            return
        self.node.start()
        if not self.context.tray_available:
            self.show_dashboard()

    def quit(self) -> None:
        """Close the windows, stop the node gracefully (it has its own timeouts), then leave the event loop."""
        if self.quitting:
            return
        self.quitting = True
        for window in (self.dashboard, self.chat, self.settings_window, self.wizard, self.swarm_window):
            if window is not None:
                window.close()
        self.tray.hide()
        if self.node.is_running:
            self.node.stopped.connect(self._quit_event_loop)
            self.node.stop()
        else:
            self.node.stop()
            self._quit_event_loop()

    def shutdown_now(self) -> None:
        """Last resort when the event loop has ended: stop the node in place."""
        self.node.stop_blocking()
        self.log_file.close()

    # ------------------------------------------------------------------ windows

    def show_dashboard(self) -> None:
        if self.config is None:
            self.show_wizard()
            return
        if self.dashboard is None:
            self.dashboard = Dashboard(self.node, self.context.icons, self.context.ui_settings, open_chat=self.show_chat,
                                       invite_friend=lambda: self.show_swarm("invite"), open_settings=self.show_settings,
                                       open_swarm=lambda: self.show_swarm(""))
        _raise(self.dashboard)

    def show_chat(self) -> None:
        if self.chat is None:
            self.chat = ChatWindow(self.node, self.context.ui_settings, self.context.icons)
        _raise(self.chat)

    def show_settings(self) -> None:
        if self.config is None:
            self.show_wizard()
            return
        if self.settings_window is None:
            view = self.swarm_client.last_view
            where = view.secret_where if view is not None and view.secret_where else self.context.secrets.where
            self.settings_window = SettingsWindow(self.config, self._save_settings, self.context.autostart,
                                                  self.context.ui_settings, self.context.default_log_dir,
                                                  secrets_where=where)
            self.settings_window.finished.connect(self._forget_settings_window)
        _raise(self.settings_window)

    def show_wizard(self, start_page: int = PAGE_WELCOME) -> None:
        if self.wizard is not None and start_page != PAGE_WELCOME and not self.wizard.isVisible():
            self.wizard.deleteLater()
            self.wizard = None
        if self.wizard is None:
            self.wizard = FirstRunWizard(self.node, self._finish_wizard, self.context.invite_decoder,
                                         default_pc_name=self._pc_name or None, secrets_where=self.context.secrets.where,
                                         tailscale_probe=self.context.tailscale_probe, start_page=start_page)
            self.wizard.setWindowIcon(self.context.icons.app_icon())
            self.wizard.set_logo(self.context.icons.app_icon())
        _raise(self.wizard)

    def show_swarm(self, section: str = "") -> None:
        """The swarm page ('' the top, 'invite' or 'join'); the wizard instead before anything is set up."""
        if self.config is None and not self.node.is_running:
            self.show_wizard()
            return
        if self.swarm_window is None:
            self.swarm_window = SwarmWindow(
                self.swarm_client, self.context.icons, self.context.ui_settings, self._qapp.clipboard(),
                tailscale_probe=self.context.tailscale_probe, invite_decoder=self.context.invite_decoder,
                secrets_where=self.context.secrets.where, use_model_copy=self._use_model_copy,
                start_new_swarm=lambda: self.show_wizard(PAGE_CREATE), confirm=self.context.confirm)
        _raise(self.swarm_window)
        QTimer.singleShot(0, lambda: self.swarm_window.show_section(section) if self.swarm_window else None)

    # ------------------------------------------------------------------ callbacks

    def _finish_wizard(self, config: AppConfig, invite_code: str | None) -> None:
        """Start the node with the wizard's choices; they are saved once the node is in the swarm."""
        if invite_code:
            self.context.secrets.set(SecretKey.INVITE_CODE, invite_code)
        self.config, self.config_saved, self._pc_name = config, False, config.pc_name
        self._restarting = self.node.is_running
        self._switch_log_dir()
        if self.node.is_running:
            self.node.stop()  # the new secrets reach a node only through a fresh environment
            self.node.stopped.connect(self._start_after_stop)
        else:
            self.node.start()

    def _start_after_stop(self) -> None:
        self.node.stopped.disconnect(self._start_after_stop)
        self.node.start()

    def _save_settings(self, config: AppConfig) -> None:
        save_config(self.context.config_path, config)
        self.config, self.config_saved = config, True
        self._switch_log_dir()
        if self.node.is_running:
            self.node.set_config(self._node_config_values())

    def _save_current(self) -> None:
        if self.config is not None:
            save_config(self.context.config_path, self.config)
            self.config_saved = True

    def _on_node_state(self, state: NodeState) -> None:
        if state is NodeState.SERVING and not self.config_saved and not self._restarting:
            self._save_current()  # the node is in the swarm: the wizard's choices hold

    def _on_swarm_view(self, view: protocol.SwarmView) -> None:
        """The node says which swarm it is in: the settings name it (after the wizard, a join or a switch)."""
        if not view.swarm_id or view.this_pc_removed or self._restarting:
            return
        base = self.config or AppConfig(mode=SwarmMode.JOIN, pc_name=self._pc_name)
        mode = SwarmMode.CREATE if view.created_here else SwarmMode.JOIN
        config = base.with_values(mode=mode, swarm_id=view.swarm_id, swarm_name=view.name[:64],
                                  model=view.model_here or base.model)
        if config != self.config or not self.config_saved:
            self.config = config
            self._save_current()

    def _on_swarm_result(self, result: protocol.SwarmResult) -> None:
        if result.op == "leave" and result.ok and not result.swarm_id:
            self.context.secrets.delete(SecretKey.INVITE_CODE)  # used up, and of a swarm this PC left
            self.config, self.config_saved = None, False
            self.context.config_path.unlink(missing_ok=True)
        elif result.op == "join" and result.ok:
            self.context.secrets.delete(SecretKey.INVITE_CODE)  # the node opens the swarm by id from now on

    def _use_model_copy(self, model: str) -> None:
        """This PC's own copy of the swarm's model: saved, sent to the node, and served (Try again)."""
        if self.config is None:
            return
        self.config = self.config.with_values(model=model)
        if self.config_saved:
            self._save_current()
        if self.node.is_running:
            self.node.set_config(self._node_config_values())
        self.node.start()

    def _forget_settings_window(self) -> None:
        self.settings_window.deleteLater()
        self.settings_window = None

    def _node_environment(self) -> dict[str, str]:
        return node_environment(self.context.base_environment, self.context.secrets.node_environment())

    def _node_config_values(self) -> dict:
        return self.config.node_values(self.context.default_log_dir) if self.config is not None else {}

    def _log_dir(self) -> Path:
        return Path(self.config.log_dir) if self.config is not None and self.config.log_dir else self.context.default_log_dir

    def _switch_log_dir(self) -> None:
        if self.log_file.path.parent != self._log_dir():
            self.log_file.close()
            self.log_file = NodeLogFile(self._log_dir())


def _raise(window: QWidget) -> None:
    window.show()
    window.raise_()
    window.activateWindow()
